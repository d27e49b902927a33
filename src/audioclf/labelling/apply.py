"""A trained model applied to items: its encoder, then what its kind applies (``APPLY``), as window scores.

The kind is chosen once, at load (``ModelCard.kind``); each kind has one function here:

- ``PROBE`` and ``MULTI_LABEL``: the encoder's embeddings through the probe (``model.probe``), the novelty
  detector where there is one, the multi-label thresholds where there are;
- ``TRANSCRIPT``: what is said, as a sentence embedding, through the probe;
- ``FUSED``: both views, mixed by ``model.fusion``;
- ``FINETUNED``: the fine-tuned transformers classifier in the folder;
- ``ONNX``: the exported graph in the folder, through onnxruntime (no torch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from audioclf.encoders.hf_encoder import LogitsEncoder
from audioclf.encoders.loader import Encoder, bf16_supported, fit_windows, load_encoder, precision_for, same_weights
from audioclf.encoders.onnx_encoder import OnnxEncoder
from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.errors import ModelError
from audioclf.evaluation.window_logits import WindowLogits
from audioclf.extraction.embed import EmbedResult, embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item
from audioclf.model.card import ModelKind, OnnxCard
from audioclf.model.folder import TrainedModel
from audioclf.model.novelty import probe_features, unit_means
from audioclf.model.probe import HeadArrays
from audioclf.speech.text_features import TextView, view_for
from audioclf.speech.transcribe import Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One application of a model: where the cache is, how to fetch URLs, windows given at prediction."""

    cache_dir: Path
    fetch: FetchOptions | None = None
    windows: WindowOptions | None = None
    progress: bool = True
    stop: Callable[[], bool] | None = None  # asked between items and encoder calls (extraction.embed_items)


Applied = tuple[WindowLogits, EmbedResult]


def apply_model(
    model: TrainedModel,
    items: Sequence[Item],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None = None,
    windows: WindowOptions | None = None,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Applied:
    """Embed ``items`` with the model's own encoder and settings (through the cache) and apply its head.
    ``windows`` replaces the model's windows (within what its encoder reads); ``stop``: see ``embed_items``."""
    return APPLY[model.kind](model, items, Run(cache_dir, fetch, windows, progress, stop))


def apply_probe(model: TrainedModel, items: Sequence[Item], run: Run) -> Applied:
    encoder, use = _encoder(model, run.windows)
    encoder = as_deep_as_the_probe(model, encoder)
    result = _embed(items, encoder, use, run)
    head, t = _head(model), model.temperature
    preds = _predictions(model, result.embedded, lambda x: head.logits(x) / t)
    return replace(_novelty(model, preds, result.embedded), thresholds=model.thresholds), result


def apply_transcript(model: TrainedModel, items: Sequence[Item], run: Run) -> Applied:
    result, text, said, _ = _with_text(model, items, run)
    head, t = _head(model), model.temperature
    return _predictions(model, text, lambda x: head.logits(x) / t, said), result


def apply_fused(model: TrainedModel, items: Sequence[Item], run: Run) -> Applied:
    """The acoustic probe's logits and the transcript probe's, each at its own temperature, mixed."""
    result, text, said, dim = _with_text(model, items, run)
    head, fusion = _head(model), model.fusion
    assert fusion is not None, "a fused model is loaded with its fusion"
    text_x = np.concatenate([e.embeddings for _, e in text]) if text else np.zeros((0, 1, dim), np.float32)
    preds = _predictions(model, result.embedded, head.logits, said)
    views = fusion.views(preds.window_logits, preds.window_recording, text_x)
    return replace(preds, window_logits=views["fused"], views=views), result


def _with_text(
    model: TrainedModel, items: Sequence[Item], run: Run
) -> tuple[EmbedResult, list[tuple[Item, Embedded]], list[Transcript], int]:
    """The acoustic embeddings, each recording's text view and transcript, and the text embedding's size."""
    encoder, use = _encoder(model, run.windows)
    view = view_for(model.card.features, encoder, run.cache_dir, use, model.path)
    assert view is not None, "transcript and fused models have a text view"
    result = _embed(items, encoder, use, run, view)
    text, said = view.apply(result.embedded)
    return result, text, said, view.text.dim


def apply_finetuned(model: TrainedModel, items: Sequence[Item], run: Run) -> Applied:
    """The transformers classifier saved in the folder (its temperature is folded into its last layer)."""
    assert model.path is not None, "a fine-tuned model is read from its folder"
    encoder = loaded_logits_encoder(model.path, bf16_supported())
    if encoder.dim != len(model.labels):
        raise ModelError(f"{model.path}: config.json has {encoder.dim} labels, audioclf.json {len(model.labels)}")
    use = windows_for(model, encoder, run.windows)
    result = _embed(items, encoder, use, run)
    preds = _predictions(model, result.embedded, lambda x: x[:, 0, :])
    return replace(preds, thresholds=model.thresholds), result


def apply_onnx(model: TrainedModel, items: Sequence[Item], run: Run) -> Applied:
    """The exported graph (window -> logits) through onnxruntime, at the model's temperature."""
    assert model.path is not None and model.card.onnx is not None, "an exported model is read from its folder"
    graph = model.card.onnx
    encoder = loaded_onnx_encoder(model.path / graph.file, len(model.labels), graph)
    use = windows_for(model, encoder, run.windows)
    result = _embed(items, encoder, use, run)
    t = model.temperature
    preds = _predictions(model, result.embedded, lambda x: x[:, 0, :] / t)
    return replace(preds, thresholds=model.thresholds), result


APPLY: dict[ModelKind, Callable[[TrainedModel, Sequence[Item], Run], Applied]] = {
    ModelKind.PROBE: apply_probe,
    ModelKind.MULTI_LABEL: apply_probe,
    ModelKind.TRANSCRIPT: apply_transcript,
    ModelKind.FUSED: apply_fused,
    ModelKind.FINETUNED: apply_finetuned,
    ModelKind.ONNX: apply_onnx,
}


def _encoder(model: TrainedModel, windows: WindowOptions | None) -> tuple[Encoder, WindowOptions]:
    """The model's encoder (loaded once per process), refused when its weights changed, and the windows."""
    encoder = loaded_encoder(model.encoder_spec, precision_for(model.encoder_identity))
    if not same_weights(encoder.identities, model.encoder_identity):
        raise ModelError(
            f"encoder {model.encoder_spec} now has different weights ({encoder.identity}) than at training "
            f"({model.encoder_identity}); retrain the model or restore the original encoder"
        )
    return encoder, windows_for(model, encoder, windows)


def _embed(
    items: Sequence[Item], encoder: Encoder, use: WindowOptions, run: Run, view: TextView | None = None
) -> EmbedResult:
    cache = EmbeddingCache(run.cache_dir, encoder.identity, use)
    same_pass = view.same_pass_cache if view is not None else None
    return embed_items(
        items, encoder, cache, use, fetch=run.fetch, progress=run.progress, transcripts=same_pass, stop=run.stop
    )


def _head(model: TrainedModel) -> HeadArrays:
    assert model.head is not None, "a probe model is loaded with its head"
    return model.head


def loaded_encoder(spec: ModelSpec, precision: Precision) -> Encoder:
    """An encoder loaded once per process and reused by every later prediction (a server, a notebook), until
    the files of a local model folder change."""
    return _cached_encoder(spec, precision, _files_stamp(spec.source))


def loaded_logits_encoder(folder: Path, bf16: bool) -> LogitsEncoder:
    return _cached_logits_encoder(folder, bf16, _files_stamp(str(folder)))


def loaded_onnx_encoder(path: Path, n_labels: int, graph: OnnxCard) -> OnnxEncoder:
    return _cached_onnx_encoder(path, n_labels, graph, _files_stamp(str(path.parent)))


@lru_cache(maxsize=2)
def _cached_onnx_encoder(
    path: Path, n_labels: int, graph: OnnxCard, stamp: tuple[tuple[str, int, int], ...]
) -> OnnxEncoder:
    return OnnxEncoder(path, n_labels, graph.min_samples, graph.max_window_s, graph.sample_rate)


@lru_cache(maxsize=2)
def _cached_encoder(spec: ModelSpec, precision: Precision, stamp: tuple[tuple[str, int, int], ...]) -> Encoder:
    return load_encoder(spec, precision).encoder


@lru_cache(maxsize=2)
def _cached_logits_encoder(folder: Path, bf16: bool, stamp: tuple[tuple[str, int, int], ...]) -> LogitsEncoder:
    return LogitsEncoder(folder, bf16=bf16)


def _files_stamp(target: str) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of the files of a local folder (empty for a hub id or a name)."""
    folder = Path(target)
    if not target or not folder.is_dir():
        return ()
    return tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir() if f.is_file()))


def windows_for(model: TrainedModel, encoder: Encoder, windows: WindowOptions | None) -> WindowOptions:
    """The model's windows, or ``windows`` where they fit its encoder (a window longer than a fixed-length input
    is refused); windows of another length than at training are allowed, with a note."""
    if windows is None:
        return model.windows
    use = fit_windows(windows, encoder)
    if abs(use.window_s - model.windows.window_s) > 1e-9:
        log.info(
            "windows of %g s; the model was trained on windows of up to %g s: where its training audio was longer,"
            " its scores may be less reliable",
            use.window_s,
            model.windows.window_s,
        )
    return use


def as_deep_as_the_probe(model: TrainedModel, encoder: Encoder) -> Encoder:
    """A probe on one layer that is not the last: the encoder stops there (encoders.early_exit)."""
    layer = model.head.config.layer if model.head is not None else ""
    up_to = getattr(encoder, "up_to", None)
    if not layer.isdigit() or up_to is None or int(layer) >= encoder.n_layers - 1:
        return encoder
    early: Encoder = up_to(int(layer))
    if early is not encoder:
        log.debug("the probe reads layer %s of %d: the encoder stops there", layer, encoder.n_layers - 1)
    return early


def _novelty(model: TrainedModel, preds: WindowLogits, embedded: Sequence[tuple[Item, Embedded]]) -> WindowLogits:
    """Each recording's and each window's distance to the training audio over the model's threshold (left None
    without a detector)."""
    detector = model.novelty
    if detector is None or not embedded or model.head is None:
        return preds
    features = probe_features(model.head, np.concatenate([e.embeddings for _, e in embedded]))
    scale = max(detector.threshold, 1e-9)
    recordings = detector.distances(unit_means(features, preds.window_recording)) / scale
    windows = detector.distances(unit_means(features, None)) / scale
    return replace(preds, recording_novelty=recordings, window_novelty=windows)


def _predictions(
    model: TrainedModel,
    embedded: Sequence[tuple[Item, Embedded]],
    logits_of: Callable[[np.ndarray], np.ndarray],
    said: list[Transcript] | None = None,
) -> WindowLogits:
    index = {label: i for i, label in enumerate(model.labels)}
    x = np.concatenate([e.embeddings for _, e in embedded]) if embedded else np.zeros((0, 1, 1), np.float32)
    return WindowLogits(
        labels=list(model.labels),
        window_logits=logits_of(x) if embedded else np.zeros((0, len(model.labels)), np.float32),
        window_recording=np.concatenate([np.full(len(e.embeddings), i) for i, (_, e) in enumerate(embedded)])
        if embedded
        else np.zeros(0, dtype=np.int64),
        window_starts_s=np.concatenate([e.starts_s + item.offset_s for item, e in embedded])
        if embedded
        else np.zeros(0),
        recordings=[item.source for item, _ in embedded],
        recording_true=np.array([index.get(item.label, -1) if item.label else -1 for item, _ in embedded]),
        recording_groups=[item.group for item, _ in embedded],
        transcripts=said,
    )
