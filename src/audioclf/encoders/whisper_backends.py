"""Who computes Whisper's encoder states for ``whisper:``: CTranslate2 (faster-whisper) or transformers.

Both are fed the same log-mel, padded the same way, so their states agree to the precision they run in; the
choice is speed. On a CPU with bf16 matmuls in hardware (AVX-512 BF16, AMX) transformers' bf16 SDPA encoder
ran 1.7x CTranslate2 int8 for Whisper base (issue 19's table), so a Hugging Face checkpoint is encoded there;
CTranslate2 stays for converted folders, for CPUs without bf16, for ``padding=audio`` (its encoder takes
shorter inputs) and for transcription, where its decoder shines. A Hugging Face checkpoint is converted to
CTranslate2 once, into the cache, when it has to transcribe or detect a language."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.errors import EncoderError, first_line

log = logging.getLogger(__name__)

CT2 = "ctranslate2"
TORCH = "transformers"
FEATURE_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft")
CONVERTED_FILES = ("tokenizer.json", "preprocessor_config.json", "vocabulary.json", "vocabulary.txt")


def is_hf_checkpoint(folder: Path) -> bool:
    """A transformers Whisper checkpoint (config.json of model_type whisper and safetensors weights)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "whisper" and any(folder.glob("*.safetensors"))


@dataclass(frozen=True)
class Backend:
    name: str  # CT2 or TORCH
    compute: str  # CTranslate2's compute type, or torch_bf16 / torch_float32: part of the encoder identity
    reason: str


def prefers_transformers(precision: Precision, padding: str) -> bool:
    """Whether a transformers checkpoint computes the states faster here than CTranslate2 (see choose_backend)."""
    from audioclf.encoders.loader import use_bf16

    return padding != "audio" and use_bf16(precision)


def ct2_compute(float32: bool, gpu: bool) -> str:
    """CTranslate2's compute type: float32 when asked, else float16 on a GPU and int8 on a CPU, as
    faster-whisper recommends."""
    return "float32" if float32 else "float16" if gpu else "int8"


def choose_backend(hf_checkpoint: bool, precision: Precision, padding: str, gpu: bool) -> Backend:
    """The fastest faithful backend for this machine, and why (logged, and the compute type is recorded)."""
    from audioclf.encoders.loader import use_bf16

    if not hf_checkpoint:
        return Backend(CT2, ct2_compute(precision == Precision.FP32, gpu), "a CTranslate2 model folder")
    if padding == "audio":
        return Backend(CT2, "float32" if precision == Precision.FP32 else "int8", "padding=audio needs CTranslate2")
    if precision == Precision.FP32:
        return Backend(TORCH, "torch_float32", "float32 was asked for")
    if use_bf16(precision):
        return Backend(TORCH, "torch_bf16", "bf16 in hardware: transformers' bf16 encoder beats CTranslate2")
    return Backend(CT2, "int8", "no bf16 in hardware: CTranslate2 int8 is the faster encoder here")


def feature_extractor(folder: Path) -> Any:
    """faster-whisper's log-mel, configured from the checkpoint's preprocessor_config.json, as faster-whisper
    configures it for its own folders."""
    from faster_whisper.feature_extractor import FeatureExtractor

    try:
        config = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return FeatureExtractor(**{k: config[k] for k in FEATURE_KEYS if k in config})


class TorchStates:
    """The encoder of a transformers Whisper checkpoint (SDPA attention; bf16 weights when asked)."""

    def __init__(self, spec: ModelSpec, folder: Path, bf16: bool) -> None:
        import torch
        from transformers import WhisperModel

        try:
            model = WhisperModel.from_pretrained(str(folder), attn_implementation="sdpa", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EncoderError(f"{spec}: cannot load the Whisper checkpoint ({first_line(exc)})") from exc
        self._torch = torch
        self._dtype = torch.bfloat16 if bf16 else torch.float32
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._encoder = model.get_encoder().eval().to(self._device, self._dtype)
        from audioclf.encoders import cpu_kernels

        cpu_kernels.install_where_faster(self._encoder, bf16)
        self.d_model = int(model.config.d_model)

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """[n_mels, frames] -> [positions, d_model] float32."""
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel[None], dtype=np.float32)).to(self._device, self._dtype)
            return self._encoder(input_features=x).last_hidden_state[0].float().cpu().numpy()


def converted(spec: ModelSpec, folder: Path, fingerprint: str, compute: str, cache_root: Path) -> Path:
    """The CTranslate2 conversion of a transformers checkpoint, made once into ``cache_root`` (atomically: a
    half-written conversion is never used)."""
    quantization = compute if compute in ("float32", "float16") else "int8"
    target = cache_root / "whisper-ct2" / f"{fingerprint}-{quantization}"
    if (target / "model.bin").is_file():
        return target
    from ctranslate2.converters import TransformersConverter

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    copy = [name for name in CONVERTED_FILES if (folder / name).is_file()]
    log.info("converting %s to CTranslate2 %s once (for transcripts and languages): %s", spec, quantization, target)
    try:
        TransformersConverter(str(folder), copy_files=copy).convert(str(tmp / "model"), quantization=quantization)
        os.replace(tmp / "model", target)
    except OSError:
        if not (target / "model.bin").is_file():  # another process did not finish it either
            raise
    except Exception as exc:  # the converter raises ValueError, KeyError, RuntimeError… on odd checkpoints
        raise EncoderError(f"{spec}: cannot convert to CTranslate2 ({first_line(exc)})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
