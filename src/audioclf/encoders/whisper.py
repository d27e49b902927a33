"""Whisper as an encoder: pooled encoder states and the spoken language.

``whisper:<size>`` (``base``, ``small``, …; local cache first, then the Hugging Face Hub) loads
``openai/whisper-<size>`` in transformers format where its bf16 encoder is the faster one (bf16 hardware), and
faster-whisper's CTranslate2 conversion otherwise or when that cannot be had; ``whisper:<folder>`` loads a
faster-whisper (CTranslate2) folder or a transformers Whisper checkpoint offline. ``whisper_backends`` picks who
computes the states (the same log-mel and padding either way). faster-whisper is an optional dependency (``pip
install audioclf[whisper]``).

Whisper's encoder was trained on 30 s inputs, so by default every window is padded to 30 s as faster-whisper
does when it transcribes (``padding="full"``); the embedding is the mean and standard deviation of the encoder
states over the frames that hold audio only — the padding is never averaged in. ``padding="audio"`` encodes
only the frames that hold audio (at least ``MIN_FRAMES``): on short clips this is ~20× faster but the states
differ from the padded ones (measured in the README), so it is a separate encoder identity and cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.encoders.hub import Identities, offline, probe_hub
from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.encoders.whisper_backends import (
    TORCH,
    Backend,
    TorchStates,
    choose_backend,
    converted,
    ct2_compute,
    feature_extractor,
    is_hf_checkpoint,
    prefers_transformers,
)
from audioclf.errors import EncoderError, first_line
from audioclf.io.audio import FRAME_HOP_SAMPLES, SAMPLE_RATE_HZ
from audioclf.io.cache import default_cache_dir

log = logging.getLogger(__name__)

MIN_FRAMES = 300  # with padding="audio": shorter inputs are padded to 3 s (keeps the states closer to Whisper's)
POOLING_VERSION = "meanstd-1"
PADDINGS = ("full", "audio")
SIZES_REPO = "Systran/faster-whisper-{}"
TRANSFORMERS_ORG = "openai/"
TRANSFORMERS_REPO = TRANSFORMERS_ORG + "whisper-{}"  # the same sizes in transformers format
HF_FILES = ("config.json", "preprocessor_config.json", "generation_config.json", "tokenizer.json", "*.safetensors")


@dataclass(frozen=True)
class WhisperSource:
    folder: Path
    hf_checkpoint: bool  # transformers weights (else a CTranslate2 folder with model.bin)
    fingerprint: str


class WhisperEncoder:
    """Mean+std of Whisper encoder states over audio frames: one "layer" of ``2 * d_model`` values."""

    n_layers = 1
    min_samples = 1
    max_window_s: float | None = None  # a longer window is encoded one input length at a time

    def __init__(self, spec: ModelSpec, source: WhisperSource, backend: Backend, padding: str = "full") -> None:
        if padding not in PADDINGS:
            raise EncoderError(f"whisper padding {padding!r}: use one of {', '.join(PADDINGS)}")
        self.spec, self.padding, self.backend = spec, padding, backend
        self._source = source
        self._faster: Any = None  # faster-whisper's model: loaded now for CTranslate2, on first use otherwise
        self._torch: TorchStates | None = None
        if backend.name == TORCH:
            self._torch = TorchStates(spec, source.folder, bf16=backend.compute == "torch_bf16")
            self._features = feature_extractor(source.folder)
            self.dim = 2 * self._torch.d_model
        else:
            self._features = self._model.feature_extractor
            n_mels = self._features.mel_filters.shape[0]
            self.dim = 2 * int(self._states(np.zeros((n_mels, 2), np.float32)).shape[-1])
        self.chunk_frames = int(self._features.nb_max_frames)  # 3000 (30 s) for every released Whisper
        self.native_window_s: float | None = self.chunk_frames * FRAME_HOP_SAMPLES / SAMPLE_RATE_HZ
        self.model_identity = f"whisper-{source.fingerprint}"
        # "whisper-<weights>-<compute type>-<padding>-<pooling>": read back by loader.IdentityParts
        self.identity = f"{self.model_identity}-{backend.compute}-{padding}-{POOLING_VERSION}"
        self.identities = Identities(self.identity)  # a hash of the files: the same wherever the folder is
        log.debug("%s: encoder states through %s %s (%s)", spec, backend.name, backend.compute, backend.reason)

    @property
    def _model(self) -> Any:
        """faster-whisper's model (transcription, language detection, and the CTranslate2 encoder)."""
        if self._faster is None:
            folder, compute = self._source.folder, self.backend.compute
            if not (folder / "tokenizer.json").is_file():  # faster-whisper would fetch one from the Hub (and retry)
                raise EncoderError(
                    f"{self.spec}: {folder} has no tokenizer.json, which faster-whisper needs (and transcripts and "
                    "spoken languages); save the model's tokenizer next to its weights"
                )
            if self._source.hf_checkpoint:  # converted with its tokenizer.json
                compute = _transcribing_compute(compute)
                folder = converted(self.spec, folder, self._source.fingerprint, compute, default_cache_dir())
            self._faster = _faster_whisper(self.spec, folder, compute)
        return self._faster

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), 1, self.dim), dtype=np.float32)
        for i, wave in enumerate(windows):
            frames = np.concatenate([self._audio_states(chunk) for chunk in self._chunks(wave)])
            out[i, 0] = np.concatenate([frames.mean(0), frames.std(0)])
        return out

    def languages(self, wave: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
        """The most likely spoken languages of (the first input length of) ``wave``, as (code, probability)."""
        if not self._model.model.is_multilingual:
            return [("en", 1.0)]
        output = self._encoder_output(self._padded(self._features(self._chunks(wave)[0])))
        ranked = self._model.model.detect_language(output)[0][:top]
        return [(token.strip("<|>"), float(p)) for token, p in ranked]

    def _chunks(self, wave: np.ndarray) -> list[np.ndarray]:
        """Pieces of at most one input length (a longer window is encoded piece by piece)."""
        size = self.chunk_frames * FRAME_HOP_SAMPLES
        return [wave[i : i + size] for i in range(0, max(1, len(wave)), size)]

    def _audio_states(self, wave: np.ndarray) -> np.ndarray:
        """Encoder states of the frames that hold audio (the encoder halves the 100 Hz mel frame rate)."""
        mel = self._features(wave)
        n_audio = min(self.chunk_frames, mel.shape[1])
        return self._states(self._padded(mel))[: max(1, (n_audio + 1) // 2)]

    def _padded(self, mel: np.ndarray) -> np.ndarray:
        n = min(self.chunk_frames, mel.shape[1])
        frames = self.chunk_frames if self.padding == "full" else max(MIN_FRAMES, n + n % 2)
        out = np.zeros((mel.shape[0], frames), dtype=np.float32)
        out[:, :n] = mel[:, :n]
        return out

    def _states(self, mel: np.ndarray) -> np.ndarray:
        if self._torch is not None:
            return self._torch.encode(mel)
        import ctranslate2

        output = self._encoder_output(mel)
        if output.device != "cpu":
            output = output.to_device(ctranslate2.Device.cpu)
        return np.asarray(output)[0]

    def _encoder_output(self, mel: np.ndarray) -> Any:
        import ctranslate2

        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        return self._model.model.encode(features, to_cpu=False)


def _fingerprint(folder: Path, hf_checkpoint: bool) -> str:
    names = ["config.json", *sorted(p.name for p in folder.glob("*.safetensors"))] if hf_checkpoint else []
    h = hashlib.sha256()
    for name in names or ["config.json", "model.bin"]:
        with open(folder / name, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()[:24]


def cpu_threads() -> int:
    """The threads torch would use: OMP_NUM_THREADS when set (Ray sets it to an actor's CPUs), else the cores
    this process may run on. CTranslate2 would otherwise take every core of the node in each actor."""
    import torch

    return torch.get_num_threads()


def load_whisper(model: ModelSpec, precision: Precision = Precision.AUTO) -> WhisperEncoder:
    """``whisper:<size or folder>[?padding=audio]``: a CTranslate2 (faster-whisper) folder or size name, or a
    transformers Whisper checkpoint folder; every failure is a one-line EncoderError."""
    spec, name, padding = model, model.source, model.option("padding", "full")
    try:
        from faster_whisper.utils import download_model
    except ImportError:
        raise EncoderError(f"{spec}: needs faster-whisper; pip install 'audioclf[whisper]'") from None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        if folder.is_absolute() or name.startswith("."):
            raise EncoderError(f"{spec}: no such model folder {folder}")
        folder = _named_model(spec, name, prefers_transformers(precision, padding), download_model)
    hf = is_hf_checkpoint(folder)
    if not hf and not (folder / "model.bin").is_file():
        raise EncoderError(f"{spec}: {folder} is not a faster-whisper model (no model.bin) nor a Whisper checkpoint")
    import ctranslate2

    backend = choose_backend(hf, precision, padding, gpu=ctranslate2.get_cuda_device_count() > 0)
    return WhisperEncoder(spec, WhisperSource(folder, hf, _fingerprint(folder, hf)), backend, padding)


def _transcribing_compute(states_compute: str) -> str:
    """CTranslate2's compute type for transcripts of a transformers checkpoint: float32 when the states are,
    float16 on a GPU (as faster-whisper recommends), int8 on a CPU."""
    import ctranslate2

    return ct2_compute(states_compute in ("float32", "torch_float32"), ctranslate2.get_cuda_device_count() > 0)


def _faster_whisper(spec: ModelSpec, folder: Path, compute: str) -> Any:
    """faster-whisper's model on ``folder`` (int8 on CPU, as faster-whisper recommends; float16 on GPU)."""
    import ctranslate2
    from faster_whisper import WhisperModel

    device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    try:
        return WhisperModel(str(folder), device=device, compute_type=compute, cpu_threads=cpu_threads())
    except (RuntimeError, ValueError, OSError) as exc:
        raise EncoderError(f"{spec}: cannot load the Whisper model ({first_line(exc)})") from exc


def _named_model(spec: ModelSpec, name: str, transformers_first: bool, download_model: Any) -> Path:
    """The folder of a size name or hub id. Where transformers computes the states faster (bf16 hardware), a
    size is ``openai/whisper-<size>`` in transformers format, from the local cache, else the hub; else, or when
    that cannot be had, faster-whisper's CTranslate2 conversion (``Systran/faster-whisper-<size>``)."""
    size = "/" not in name
    if name.startswith(TRANSFORMERS_ORG) or (transformers_first and size):
        repo = TRANSFORMERS_REPO.format(name) if size else name
        try:
            return _fetched(spec, repo, lambda local: _snapshot(repo, local))
        except EncoderError as exc:
            if not size:
                raise
            log.info("%s; using %s instead", exc, SIZES_REPO.format(name))
    repo = SIZES_REPO.format(name) if size else name
    return _fetched(spec, repo, lambda local: download_model(name, local_files_only=local))


def _snapshot(repo: str, local_only: bool) -> str:
    """A transformers Whisper checkpoint's files from the hub (or only its local cache)."""
    from huggingface_hub import snapshot_download

    return str(snapshot_download(repo, allow_patterns=list(HF_FILES), local_files_only=local_only))


def _fetched(spec: ModelSpec, repo: str, fetch: Callable[[bool], str]) -> Path:
    """``fetch(local_files_only)``'s folder: the local hub cache first, then the hub after one bounded check."""
    try:
        return Path(fetch(True))
    except Exception:  # not in the local cache (huggingface_hub raises several error types)
        if offline():
            raise EncoderError(f"{spec}: {repo} is not in the local cache and HF_HUB_OFFLINE is set") from None
    probe_hub(spec, repo)
    try:
        return Path(fetch(False))
    except Exception as exc:
        raise EncoderError(f"{spec}: cannot download {repo} ({first_line(exc)})") from exc
