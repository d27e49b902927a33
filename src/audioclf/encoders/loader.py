"""Audio encoders behind one interface: pretrained transformers models (``hf:``) and the built-in one.

Every encoder maps a list of 16 kHz mono windows to ``[n_windows, n_layers, dim]`` float32 pooled
embeddings: one row per hidden layer, so the layer choice is made by the head without re-embedding.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audioclf.encoders.hub import load_hf, model_fingerprint, pretrained, tokenizer_of
from audioclf.encoders.mfcc import BUILTIN_DIM, BUILTIN_VERSION, builtin_embed_batch
from audioclf.encoders.spec import BUILTIN, HF, ModelSpec
from audioclf.errors import EncoderError
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "hf:facebook/wav2vec2-base-960h"
FALLBACK_ENV = "AUDIOCLF_FALLBACK_ENCODER"  # a local pretrained model to use when the default cannot be loaded
BF16_SUFFIX = "-bf16"  # encoder identities of bf16 embeddings (they differ slightly from fp32 ones)
MAX_BATCH_SAMPLES = 4 * 10 * SAMPLE_RATE_HZ  # 40 s of audio per forward pass: bounds activation memory
MAX_BATCH_ITEMS = 32


class Encoder(Protocol):
    spec: str  # what the user asked for, e.g. "builtin" or "hf:facebook/wav2vec2-base-960h"
    identity: str  # content hash of the weights and settings: part of every cache key
    n_layers: int
    dim: int
    min_samples: int  # shorter windows cannot be embedded (a convolutional front end's receptive field)
    native_window_s: float | None  # the input length the model was built for: the default window
    max_window_s: float | None  # longer windows cannot be embedded (a fixed-length input)

    def embed(self, windows: list[np.ndarray]) -> np.ndarray: ...


class BuiltinEncoder:
    """Log-mel/MFCC features that need no download (see ``builtin.py``)."""

    spec = BUILTIN
    n_layers = 1
    min_samples = 1
    native_window_s: float | None = None
    max_window_s: float | None = None

    def __init__(self) -> None:
        self.identity = f"builtin-{BUILTIN_VERSION}"
        self.dim = BUILTIN_DIM

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        return builtin_embed_batch(windows)[:, None, :].astype(np.float32)


class HFEncoder:
    """Any transformers audio encoder loaded with AutoFeatureExtractor + AutoModel; mask-aware mean pooling."""

    def __init__(self, spec: str, extractor: Any, model: Any, *, bf16: bool = False, tokenizer: Any = None) -> None:
        import torch

        from audioclf.encoders import groupnorm
        from audioclf.encoders.hf_families import family_of

        self.spec = spec
        try:  # first: a model for another sample rate (CLAP) or another input is refused before anything else
            self.family = family_of(model, extractor)
        except EncoderError as exc:
            raise EncoderError(f"{spec}: {exc}") from None
        if not hasattr(model.config, "hidden_size") or not hasattr(model.config, "num_hidden_layers"):
            raise EncoderError(f"{spec}: {type(model).__name__} is not an audio encoder with hidden states")
        # A *ForCTC model with its tokenizer also transcribes, in the same forward pass (greedy CTC per window).
        self._tokenizer = tokenizer
        self.transcribes = tokenizer is not None and hasattr(model, "lm_head")
        self.last_texts: list[str] | None = None  # the windows of the last embed() call, when it transcribes
        self._batch_texts: list[str] = []
        self._bf16 = bf16  # bf16 weights and activations: AMX/AVX-512 BF16 matmuls on CPU, tensor cores on GPU
        self._torch = torch
        self._model = model  # the encoder of an encoder-decoder model (see _from_pretrained)
        self._model.eval()
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._model.to(self._device)
        # Group-norm models (wav2vec2-base) are trained without attention masks: plain padding would change
        # their output. Known ones get a length-aware first norm (groupnorm.py) and padded batches with a mask;
        # fixed-input families pad every clip on its own; any other only sees batches of equal-length windows.
        self._norm = groupnorm.install(self._model)
        self._masks = bool(getattr(extractor, "return_attention_mask", False)) or self._norm is not None
        safe = model.config.model_type in groupnorm.PADDING_SAFE_TYPES and self._masks
        self._pads = safe or self.family.exact_batches
        self.n_layers = int(model.config.num_hidden_layers) + 1
        self._keep: int | None = None  # hidden states computed (up_to); None: all
        self.dim = int(model.config.hidden_size)
        self.min_samples = self.family.min_samples
        self.native_window_s = self.max_window_s = self.family.fixed_input_s
        self.identity = model_fingerprint(model, extractor) + (BF16_SUFFIX if bf16 else "")
        if bf16:
            # Converted once: under autocast every call would cast all fp32 weights again, which dominates on
            # short clips (bench: 7.5x -> 10.4x realtime on 0.4 s clips, embeddings cosine >= 0.9999 vs fp32).
            self._model.to(torch.bfloat16)

    def up_to(self, layer: int) -> HFEncoder:
        """This encoder computing only hidden states 0..``layer`` (the rest of each row stays zero): what a
        probe on that one layer reads, at less cost. Itself where that is not known to be exact."""
        from audioclf.encoders.early_exit import can_stop_early

        if self.transcribes or not can_stop_early(self._model, layer):
            return self
        early = copy.copy(self)
        early._keep = layer + 1
        early.identity = f"{self.identity}-upto{layer}"  # other arrays: their own cache entries
        return early

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), self.n_layers, self.dim), dtype=np.float32)
        texts = [""] * len(windows)
        fixed = round((self.family.fixed_input_s or 0.0) * SAMPLE_RATE_HZ)
        for batch in _length_batches(windows, equal_only=not self._pads, floor=fixed):
            out[batch] = self._guarded([windows[i] for i in batch])
            for i, text in zip(batch, self._batch_texts, strict=False):
                texts[i] = text
        self.last_texts = texts if self.transcribes else None
        return out

    def _guarded(self, waves: list[np.ndarray]) -> np.ndarray:
        """One batch; whatever the extractor or model raises becomes one line naming the family."""
        try:
            return self._embed_batch(waves)
        except EncoderError:
            raise
        except Exception as exc:  # torch and transformers raise RuntimeError, ValueError, TypeError, IndexError…
            from audioclf.encoders.hf_families import model_failure

            raise model_failure(self.family, self.spec, exc) from exc

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        from audioclf.encoders.hf_families import pool_layers

        inputs = self.family.inputs(waves, mask=self._masks)
        if self._keep is not None:  # up_to: the forward pass stops at the deepest layer the probe reads
            from audioclf.encoders.early_exit import states_up_to

            hidden = states_up_to(self._model, self._keep - 1, lambda: self._forward(inputs, waves))
            return self._padded_layers(pool_layers(hidden, lambda n: self.family.audio_mask(waves, inputs, n)))
        output = self._forward(inputs, waves, output_hidden_states=True)
        hidden = output.hidden_states
        if self.transcribes:  # greedy CTC over each window's own frames: merge repeats, drop blanks
            frames = self.family.audio_mask(waves, inputs, output.logits.shape[1]).sum(1)
            ids = output.logits.argmax(-1).cpu()
            self._batch_texts = [self._tokenizer.decode(ids[i, : int(n)]).strip() for i, n in enumerate(frames)]
        return pool_layers(hidden, lambda n: self.family.audio_mask(waves, inputs, n)).cpu().numpy()

    def _padded_layers(self, pooled: Any) -> np.ndarray:
        out = np.zeros((pooled.shape[0], self.n_layers, self.dim), dtype=np.float32)  # deeper layers: not run
        out[:, : pooled.shape[1]] = pooled.cpu().numpy()
        return out

    def _forward(self, inputs: dict[str, Any], waves: list[np.ndarray], **kwargs: Any) -> Any:
        """The model on one batch; padded only where that leaves every clip's output as if it were alone."""
        torch = self._torch
        inputs = dict(inputs)
        mask = inputs.pop("attention_mask", None)
        if self._masks and mask is not None:
            inputs["attention_mask"] = mask
        if self._norm is not None:
            from audioclf.encoders.groupnorm import first_layer_lengths

            self._norm.lengths = first_layer_lengths(self._model, [len(w) for w in waves])
        try:
            with torch.inference_mode(), torch.autocast(self._device.type, torch.bfloat16, enabled=self._bf16):
                return self._model(**self._to_device(inputs), **kwargs)
        finally:
            if self._norm is not None:
                self._norm.lengths = None

    def _to_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        cast = torch.bfloat16 if self._bf16 else None
        return {k: v.to(self._device, dtype=cast if v.is_floating_point() else None) for k, v in inputs.items()}


class LogitsEncoder(HFEncoder):
    """A fine-tuned AutoModelForAudioClassification folder used as an "encoder" whose output is its logits, so
    prediction shares the windowing, batching and cache of the probe path."""

    def __init__(self, folder: Path, *, bf16: bool = False) -> None:
        from transformers import AutoModelForAudioClassification

        extractor, model = pretrained(
            AutoModelForAudioClassification, str(folder), True, str(folder), "fine-tuned model"
        )
        super().__init__(f"finetuned:{folder}", extractor, model, bf16=bf16)
        self.n_layers, self.dim = 1, int(model.config.num_labels)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        inputs = self.family.inputs(waves, mask=self._masks)
        return self._forward(inputs, waves).logits.float().cpu().numpy()[:, None, :]


def _length_batches(windows: list[np.ndarray], *, equal_only: bool, floor: int = 0) -> Iterator[list[int]]:
    """Indices grouped into batches of similar (or, with ``equal_only``, identical) length; a model with a fixed
    input (``floor`` samples) costs that much per window, however short."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    batch: list[int] = []
    for i in order:
        longest = max(floor, len(windows[i]))  # sorted ascending: the newest is the longest
        too_big = (len(batch) + 1) * longest > MAX_BATCH_SAMPLES or len(batch) >= MAX_BATCH_ITEMS
        if batch and (too_big or (equal_only and len(windows[batch[0]]) != len(windows[i]))):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@dataclass(frozen=True)
class LoadedEncoder:
    encoder: Encoder
    fallback_reason: str | None = None  # set when the default model could not be loaded


class InputLength(Protocol):
    spec: str
    native_window_s: float | None
    max_window_s: float | None


def fit_windows(windows: WindowOptions, encoder: InputLength) -> WindowOptions:
    """``windows`` for ``encoder``: its native input length when none was chosen; a window longer than a
    fixed-length input is refused (the extractor would silently cut it)."""
    native = encoder.native_window_s
    if windows.from_encoder:
        windows = replace(windows, from_encoder=False)
        if native is not None:
            windows = replace(windows, window_s=native, hop_s=native)
            log.info("windows of %g s: the native input length of %s", native, encoder.spec)
    longest = encoder.max_window_s
    if longest is not None and windows.window_s > longest + 1e-9:
        raise EncoderError(
            f"{encoder.spec} reads at most {longest:g} s of audio per window; use windows of {longest:g} s or less"
        )
    return windows


def bf16_supported() -> bool:
    """bf16 arithmetic in hardware: a GPU that supports it, or a CPU with AVX-512 BF16 / AMX."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def same_weights(a: str, b: str) -> bool:
    """Whether two encoder identities are the same weights and settings, whatever precision each ran in."""

    def strip(identity: str) -> str:
        identity = identity.removesuffix(BF16_SUFFIX)
        if identity.startswith("whisper-"):  # whisper-<weights>-<compute type>-<padding>-<pooling>
            parts = identity.split("-")
            identity = "-".join(parts[:2] + parts[3:])
        return identity

    return strip(a) == strip(b)


def precision_for(identity: str) -> str:
    """The --precision that reproduces embeddings recorded under ``identity`` as closely as this machine can."""
    if identity.endswith(BF16_SUFFIX):
        return "bf16" if bf16_supported() else "fp32"
    if identity.startswith("whisper-"):  # whisper-<weights>-<compute type>-…
        parts = identity.split("-")
        return "fp32" if len(parts) > 2 and "float32" in parts[2] else "auto"
    return "fp32"


def use_bf16(precision: str) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise EncoderError(f"precision {precision!r}: use auto, bf16 or fp32")
    return precision == "bf16" or (precision == "auto" and bf16_supported())


def load_encoder(spec: str | None = None, precision: str = "auto") -> LoadedEncoder:
    """Load ``spec`` (``builtin`` or ``hf:<hub id or local dir>``).

    With ``spec=None`` the default pretrained model is tried and, if it cannot be loaded (offline, hub
    unreachable), the built-in encoder is used and the reason returned. A named encoder never falls back.
    """
    if spec is None:
        try:
            return LoadedEncoder(_load_spec(DEFAULT_ENCODER, precision))
        except EncoderError as exc:
            return LoadedEncoder(_fallback(str(exc), precision), fallback_reason=str(exc))
    return LoadedEncoder(_load_spec(spec, precision))


def _fallback(reason: str, precision: str) -> Encoder:
    """A pretrained model the user keeps locally ($AUDIOCLF_FALLBACK_ENCODER, e.g. whisper:/models/base) if it
    loads, else the built-in encoder; one warning line says which and why."""
    local = os.environ.get(FALLBACK_ENV, "").strip()
    if local:
        try:
            encoder = _load_spec(local, precision)
        except EncoderError as exc:
            log.warning("%s; %s=%s does not load either (%s)", reason, FALLBACK_ENV, local, exc)
        else:
            log.warning("%s; using %s from %s instead", reason, local, FALLBACK_ENV)
            return encoder
    log.warning("%s; using the built-in encoder instead (name an encoder to use another)", reason)
    return BuiltinEncoder()


def _load_spec(spec: str, precision: str = "auto") -> Encoder:
    model = ModelSpec.parse(spec)
    if model.kind == BUILTIN:
        return BuiltinEncoder()
    if model.kind == HF:
        bf16 = use_bf16(precision)
        return load_hf(model, lambda source, local_only: _from_pretrained(str(model), source, local_only, bf16))
    from audioclf.encoders.whisper import load_whisper

    return load_whisper(model, precision)


def _from_pretrained(spec: str, source: str, local_only: bool, bf16: bool) -> Encoder:
    from transformers import AutoConfig, AutoModel, AutoModelForCTC

    try:
        architectures = AutoConfig.from_pretrained(source, local_files_only=local_only).architectures or []
    except (OSError, ValueError, KeyError):
        architectures = []  # the loader below says what is wrong
    ctc = any(str(a).endswith("ForCTC") for a in architectures)
    tokenizer = tokenizer_of(source, local_only) if ctc else None  # without one: embeddings only, via AutoModel
    model_class = AutoModelForCTC if tokenizer is not None else AutoModel
    extractor, model = pretrained(model_class, source, local_only, spec, "model")
    if getattr(model.config, "is_encoder_decoder", False):  # Whisper: the encoder alone (the decoder is text)
        model = model.get_encoder()
    return HFEncoder(spec, extractor, model, bf16=bf16, tokenizer=tokenizer)
