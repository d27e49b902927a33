"""Audio encoders behind one interface: pretrained transformers models (``hf:``) and the built-in one.

Every encoder maps a list of 16 kHz mono windows to ``[n_windows, n_layers, dim]`` float32 pooled
embeddings: one row per hidden layer, so the layer choice is made by the head without re-embedding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audioclf.encoders.hf_encoder import BF16_SUFFIX, HFEncoder
from audioclf.encoders.hub import Identities, fingerprints, load_hf, pretrained, tokenizer_of
from audioclf.encoders.mfcc import BUILTIN_DIM, BUILTIN_VERSION, builtin_embed_batch
from audioclf.encoders.spec import BUILTIN, HF, ModelSpec, Precision, parse_spec
from audioclf.errors import EncoderError
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions

log = logging.getLogger(__name__)

DEFAULT_ENCODER = ModelSpec(HF, "facebook/wav2vec2-base-960h")
FALLBACK_ENV = "AUDIOCLF_FALLBACK_ENCODER"  # a local pretrained model to use when the default cannot be loaded


class Encoder(Protocol):
    spec: ModelSpec  # what the user asked for, e.g. builtin or hf:facebook/wav2vec2-base-960h
    identity: str  # content hash of the weights and settings: part of every cache key
    identities: Identities  # the identity, then the older form that earlier versions saved with a model
    n_layers: int
    dim: int
    min_samples: int  # shorter windows cannot be embedded (a convolutional front end's receptive field)
    native_window_s: float | None  # the input length the model was built for: the default window
    max_window_s: float | None  # longer windows cannot be embedded (a fixed-length input)

    def embed(self, windows: list[np.ndarray]) -> np.ndarray: ...


def sample_rate_of(encoder: object) -> int:
    """The samples per second an encoder's windows hold: 16 kHz, unless it reads another (CLAP's 48 kHz, an
    exported CLAP graph)."""
    return int(getattr(encoder, "sample_rate", SAMPLE_RATE_HZ))


class BuiltinEncoder:
    """Log-mel/MFCC features that need no download (see ``builtin.py``)."""

    spec = ModelSpec(BUILTIN)
    n_layers = 1
    min_samples = 1
    native_window_s: float | None = None
    max_window_s: float | None = None

    def __init__(self) -> None:
        self.identity = f"builtin-{BUILTIN_VERSION}"
        self.identities = Identities(self.identity)
        self.dim = BUILTIN_DIM

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        return builtin_embed_batch(windows)[:, None, :].astype(np.float32)


@dataclass(frozen=True)
class LoadedEncoder:
    encoder: Encoder
    fallback_reason: str | None = None  # set when the default model could not be loaded


class InputLength(Protocol):
    spec: ModelSpec
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


@dataclass(frozen=True)
class IdentityParts:
    """An encoder identity read once: its weights and settings, and the precision it was recorded in (a bf16
    suffix, or a Whisper identity's compute type: ``whisper-<weights>-<compute type>-<padding>-<pooling>``)."""

    weights: str  # the identity without what the precision changes
    bf16: bool
    compute: str | None  # a Whisper identity's compute type, else None

    @classmethod
    def of(cls, identity: str) -> IdentityParts:
        bare = identity.removesuffix(BF16_SUFFIX)
        parts = bare.split("-")
        if parts[0] != "whisper":
            return cls(bare, bare != identity, None)
        return cls("-".join(parts[:2] + parts[3:]), bare != identity, parts[2] if len(parts) > 2 else "")


def same_weights(current: str | Iterable[str], saved: str) -> bool:
    """Whether an encoder's identity (or, given its ``identities``, any form of it) and one saved with a model
    are the same weights and settings, whatever precision each ran in."""
    forms = [current] if isinstance(current, str) else current
    weights = IdentityParts.of(saved).weights
    return any(IdentityParts.of(form).weights == weights for form in forms)  # in order: a legacy form when needed


def precision_for(identity: str) -> Precision:
    """The precision that reproduces embeddings recorded under ``identity`` as closely as this machine can."""
    parts = IdentityParts.of(identity)
    if parts.bf16:
        return Precision.BF16 if bf16_supported() else Precision.FP32
    if parts.compute is not None:
        return Precision.FP32 if "float32" in parts.compute else Precision.AUTO
    return Precision.FP32


def use_bf16(precision: Precision) -> bool:
    return precision == Precision.BF16 or (precision == Precision.AUTO and bf16_supported())


def load_encoder(spec: ModelSpec | str | None = None, precision: Precision = Precision.AUTO) -> LoadedEncoder:
    """Load ``spec`` (``builtin``, ``hf:<hub id or local dir>`` or ``whisper:<size or folder>``; a string is
    parsed here, the public entry for scripts and notebooks).

    With ``spec=None`` the default pretrained model is tried and, if it cannot be loaded (offline, hub
    unreachable), the built-in encoder is used and the reason returned. A named encoder never falls back.
    """
    if spec is None:
        try:
            return LoadedEncoder(_load_spec(DEFAULT_ENCODER, precision))
        except EncoderError as exc:
            return LoadedEncoder(_fallback(str(exc), precision), fallback_reason=str(exc))
    return LoadedEncoder(_load_spec(parse_spec(spec), precision))


def _fallback(reason: str, precision: Precision) -> Encoder:
    """A pretrained model the user keeps locally ($AUDIOCLF_FALLBACK_ENCODER, e.g. whisper:/models/base) if it
    loads, else the built-in encoder; one warning line says which and why."""
    local = os.environ.get(FALLBACK_ENV, "").strip()
    if local:
        try:
            encoder = _load_spec(parse_spec(local), precision)
        except EncoderError as exc:
            log.warning("%s; %s=%s does not load either (%s)", reason, FALLBACK_ENV, local, exc)
        else:
            log.warning("%s; using %s from %s instead", reason, local, FALLBACK_ENV)
            return encoder
    log.warning("%s; using the built-in encoder instead (name an encoder to use another)", reason)
    return BuiltinEncoder()


def _load_spec(model: ModelSpec, precision: Precision) -> Encoder:
    if model.kind == BUILTIN:
        return BuiltinEncoder()
    if model.kind == HF:
        bf16 = use_bf16(precision)
        return load_hf(model, lambda source, local_only: _from_pretrained(model, source, local_only, bf16))
    from audioclf.encoders.whisper import load_whisper

    return load_whisper(model, precision)


def _from_pretrained(spec: ModelSpec, source: str, local_only: bool, bf16: bool) -> Encoder:
    config = _config(source, local_only)
    if config is not None and config.model_type == "clap":  # audio and text towers, 48 kHz: its own encoder
        from audioclf.encoders.clap import load_clap

        return load_clap(spec, source, local_only)
    model, extractor, tokenizer = _loaded(spec, source, local_only, config)

    def again() -> tuple[Any, Any]:  # the model and extractor as loaded: a bf16 encoder's legacy identity
        return _loaded(spec, source, local_only, config)[:2]

    return HFEncoder(spec, extractor, model, bf16=bf16, tokenizer=tokenizer, reload=again)


def _config(source: str, local_only: bool) -> Any | None:
    """The model's config, read once (None: unreadable; the loader then says what is wrong)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError):
        return None


def _loaded(spec: ModelSpec, source: str, local_only: bool, config: Any | None) -> tuple[Any, Any, Any]:
    """The encoder model, its feature extractor and its tokenizer (a CTC model's, else None)."""
    from transformers import AutoModel, AutoModelForCTC

    architectures = (config.architectures or []) if config is not None else []
    ctc = any(str(a).endswith("ForCTC") for a in architectures)
    tokenizer = tokenizer_of(source, local_only) if ctc else None  # without one: embeddings only, via AutoModel
    model_class = AutoModelForCTC if tokenizer is not None else AutoModel
    extractor, model = pretrained(model_class, source, local_only, spec, "model")
    if getattr(model.config, "is_encoder_decoder", False):  # Whisper: the encoder alone (the decoder is text)
        model = model.get_encoder()
    return model, extractor, tokenizer


def load_hf_model(spec: ModelSpec) -> tuple[Any, Any, Identities]:
    """An ``hf:`` encoder's transformers model (the encoder of an encoder-decoder) and feature extractor, in
    fp32 and as loaded (none of ``HFEncoder``'s faster kernels), with its weights' identities: what an export
    traces."""

    def load(source: str, local_only: bool) -> tuple[Any, Any]:
        return _loaded(spec, source, local_only, _config(source, local_only))[:2]

    model, extractor = load_hf(spec, load)
    return model.eval(), extractor, fingerprints(model, extractor, lambda: (model, extractor))
