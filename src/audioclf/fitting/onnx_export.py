"""``audioclf export --format onnx``: a model folder as an ONNX graph (``onnx_graph``: one window of raw 16 kHz
samples in, the logits out) beside a model card of kind ``onnx`` that holds the labels, windows, temperature
and thresholds. ``audioclf predict`` runs the new folder through onnxruntime (``encoders.onnx_encoder``), and so
can any program with onnxruntime and numpy alone (the README's example).

The graph is traced by ``torch.onnx.export`` (the dynamo exporter, any window length) from the encoder as
loaded (fp32), then checked: onnxruntime and the torch path must give the same logits on test windows of the
model's own lengths (within ``EXACT``), or nothing is written. ``int8`` quantises the weights dynamically
(``onnx_quantize``): smaller and often faster, not exact, so it is kept only when its answers are the fp32
graph's on recordings the user gives (top-1 agreement at least 0.99).

What cannot be exported is refused in one line: the built-in encoder (its front end is numpy, not a graph),
``whisper:`` encoders (CTranslate2), transcript and fused models (a recogniser's decoding loop and a sentence
encoder), the filterbank families (AST, wav2vec2-BERT: Kaldi filterbanks are not in the graph yet) and fused
CLAP checkpoints (their fusion branch depends on the data). Unfused CLAP exports with its 48 kHz front end."""

from __future__ import annotations

import enum
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.encoders.hf_families import WaveformFamily, WhisperFamily, family_of
from audioclf.encoders.loader import load_hf_model, same_weights
from audioclf.encoders.spec import HF
from audioclf.errors import AudioclfError, ModelError, first_line
from audioclf.fileio import atomic_path
from audioclf.fitting.onnx_graph import ClapGraph, ProbeGraph, WaveformGraph, WhisperGraph
from audioclf.fitting.onnx_quantize import Agreement, ReadOptions, quantize_checked, require_check
from audioclf.io.audio import SAMPLE_RATE_HZ
from audioclf.model.card import Abstain, ModelKind, OnnxCard
from audioclf.model.folder import TrainedModel, load_model, prepare_out_dir, write_card

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXACT = 1e-3  # the largest |logit difference| from the torch path an fp32 export may have
CHECK_SECONDS = (1.0, 0.37, 2.5)  # test windows (cut to the model's window), random audio


class Quantize(enum.StrEnum):
    NONE = "none"
    INT8 = "int8"


@dataclass(frozen=True)
class Exported:
    out: Path
    size_bytes: int
    max_difference: float  # onnxruntime against torch, over the check windows (fp32 graph)
    quantized: Quantize
    seconds: float
    agreement: Agreement | None = None  # int8: how often its answers were the fp32 graph's on the check recordings


@dataclass(frozen=True)
class Traceable:
    """What is traced, and the windows it takes."""

    module: Any  # an ``onnx_graph`` module in eval mode
    family: str
    min_samples: int  # a shorter window gives no output position
    max_window_s: float | None  # a fixed-length input: no longer window
    rate: int = SAMPLE_RATE_HZ  # the samples per second of its ``audio`` input


def export_onnx(
    model_dir: Path, out: Path, *, quantize: Quantize = Quantize.NONE, check: Sequence[Path] = (), force: bool = False
) -> Exported:
    """``model_dir`` as ``out/model.onnx`` and ``out/audioclf.json``; the card is written last. ``int8``
    weights are kept only when they give the fp32 graph's answers on the ``check`` recordings."""
    started = time.perf_counter()
    if quantize is Quantize.INT8:
        require_check(check)  # before any work
    model = load_model(model_dir)
    graph = _graph(model)
    prepare_out_dir(out, force=force)
    windows = _check_windows(model.windows.window_s, graph)
    agreement = None
    with atomic_path(out / ONNX_FILE) as tmp:
        _trace(graph.module, windows[0], tmp)
        difference = _difference(graph.module, tmp, windows)
        if difference > EXACT:
            raise ModelError(f"{model_dir}: the ONNX graph differs from the model by {difference:.2g} in its logits")
        if quantize is Quantize.INT8:
            agreement = _quantized(tmp, check, model, graph)
    onnx = OnnxCard(
        ONNX_FILE, graph.family, graph.min_samples, graph.max_window_s, str(model_dir), difference, graph.rate
    )
    if agreement is not None:
        onnx = replace(onnx, quantized=Quantize.INT8.value, int8_agreement=agreement.top1, int8_checked=agreement.clips)
    write_card(out, _exported_card(model, onnx))
    seconds = time.perf_counter() - started
    return Exported(out, (out / ONNX_FILE).stat().st_size, difference, quantize, seconds, agreement)


def _quantized(path: Path, check: Sequence[Path], model: TrainedModel, graph: Traceable) -> Agreement:
    """``path`` (the fp32 graph) replaced by its int8 weights, when they agree with it on ``check``."""
    fp32 = path.with_name(path.name + ".fp32")
    path.rename(fp32)
    try:
        reads = ReadOptions(model.windows, graph.min_samples, graph.rate, len(model.labels))
        return quantize_checked(fp32, path, check, reads, model.temperature)
    finally:
        fp32.unlink(missing_ok=True)


def _graph(model: TrainedModel) -> Traceable:
    """The torch module to trace for ``model``, or one line saying why there is none."""
    kind, spec = model.kind, model.encoder_spec
    if kind in (ModelKind.TRANSCRIPT, ModelKind.FUSED):
        raise ModelError(
            f"{model.path}: this model reads transcripts (a speech recogniser's decoding loop and a sentence "
            "encoder), which are not one ONNX graph; export an acoustic model"
        )
    if kind is ModelKind.ONNX:
        raise ModelError(f"{model.path}: already an ONNX export")
    if kind is ModelKind.FINETUNED:
        return _finetuned_graph(model)
    if spec.kind != HF:
        why = {
            "builtin": "the built-in encoder's front end is numpy code, not a torch graph",
            "whisper": "whisper: encoders run on CTranslate2 (faster-whisper), which has no ONNX export; a probe on "
            "hf:<a Whisper checkpoint> can be exported",
        }.get(spec.kind, f"{spec.kind} encoders have no ONNX export")
        raise ModelError(f"{model.path}: cannot export to ONNX: {why}")
    torch_model, extractor, identities = load_hf_model(spec)
    if not same_weights(identities, model.encoder_identity):
        raise ModelError(f"{model.path}: encoder {spec} has different weights than at training; retrain the model")
    assert model.head is not None, "a probe model is loaded with its head"
    if torch_model.config.model_type == "clap":
        return _clap_graph(torch_model, extractor, ProbeGraph(model.head), str(model.path))
    return _family_graph(torch_model, extractor, ProbeGraph(model.head), str(model.path))


def _clap_graph(model: Any, extractor: Any, head: ProbeGraph, where: str) -> Traceable:
    if extractor.truncation == "fusion":  # its fusion branch is chosen by the data: torch.export cannot trace it
        raise ModelError(f"{where}: cannot export to ONNX: a fused CLAP checkpoint's fusion branch is not traceable")
    limit = float(extractor.max_length_s)
    return Traceable(ClapGraph(model, extractor, head).eval(), "CLAP", 1, limit, int(extractor.sampling_rate))


def _family_graph(torch_model: Any, extractor: Any, head: ProbeGraph | None, where: str) -> Traceable:
    family = family_of(torch_model, extractor)
    if isinstance(family, WhisperFamily) and head is not None:
        return Traceable(WhisperGraph(torch_model, extractor, head).eval(), family.name, 1, family.fixed_input_s)
    if isinstance(family, WaveformFamily):
        normalize = bool(getattr(extractor, "do_normalize", False))
        return Traceable(WaveformGraph(torch_model, normalize, head).eval(), family.name, family.min_samples, None)
    raise ModelError(f"{where}: cannot export to ONNX: the {family.name} front end is not in the graph yet")


def _finetuned_graph(model: TrainedModel) -> Traceable:
    from transformers import AutoModelForAudioClassification

    from audioclf.encoders.hub import pretrained

    assert model.path is not None
    extractor, classifier = pretrained(
        AutoModelForAudioClassification, str(model.path), True, str(model.path), "fine-tuned model"
    )
    return _family_graph(classifier.eval(), extractor, None, str(model.path))


def _check_windows(window_s: float, graph: Traceable) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    longest = min(window_s, graph.max_window_s or window_s)
    lengths = [max(graph.min_samples, round(min(s, longest) * graph.rate)) for s in CHECK_SECONDS]
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _trace(graph: Any, example: np.ndarray, path: Path) -> None:
    import torch
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's op library)
    except ImportError:
        raise AudioclfError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from None
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed": not ours to say
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notes about its own internals
            program = torch.onnx.export(
                graph,
                (torch.from_numpy(example)[None],),
                input_names=["audio"],
                output_names=["logits"],
                dynamo=True,
                dynamic_shapes={"audio": {1: Dim.AUTO}},
                verbose=False,
            )
        assert program is not None
        program.save(str(path))
    except Exception as exc:  # torch.export and the exporter raise many types; one line names the model
        inner = getattr(graph, "model", None) or getattr(graph, "encoder", graph)
        raise ModelError(f"cannot export {type(inner).__name__} to ONNX ({first_line(exc)})") from exc


def _difference(graph: Any, path: Path, windows: list[np.ndarray]) -> float:
    """The largest |logit difference| between onnxruntime on ``path`` and the torch module, over ``windows``."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for window in windows:
        with torch.no_grad():
            expected = graph(torch.from_numpy(window)[None]).numpy()
        got = session.run(["logits"], {"audio": window[None]})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _exported_card(model: TrainedModel, onnx: OnnxCard) -> Any:
    """The source card as an exported model's: the graph replaces the encoder and head; the novelty detector
    and the events segmenter's second head need the probe's features, which the graph does not give."""
    card = model.card
    abstain = card.abstain
    if abstain is not None and abstain.novelty is not None:
        abstain = Abstain(abstain.min_confidence, abstain.keeps_correct, abstain.fitted_on, None)
    segmenting = card.segmenting
    if segmenting is not None:
        segmenting = replace(segmenting, context_head=False, context_novelty=None)
    return replace(card, kind=ModelKind.ONNX, head=None, fusion=None, abstain=abstain, segmenting=segmenting, onnx=onnx)
