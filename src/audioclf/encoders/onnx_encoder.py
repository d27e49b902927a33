"""An exported model's ONNX graph behind the ``embed(windows)`` interface (``fitting.onnx_export`` writes it):
each window's logits through onnxruntime, so prediction shares the windowing, cache and segments of every
other model, and needs neither torch nor transformers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from audioclf.encoders.hub import Identities
from audioclf.encoders.spec import ONNX, ModelSpec
from audioclf.errors import EncoderError, ModelError, first_line

INPUT, OUTPUT = "audio", "logits"


class OnnxEncoder:
    """One window at a time through an ``onnxruntime`` session (the graph takes a batch of one)."""

    n_layers = 1
    native_window_s: float | None = None

    def __init__(
        self, path: Path, n_labels: int, min_samples: int, max_window_s: float | None, sample_rate: int
    ) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise EncoderError(f"{path}: running an ONNX model needs onnxruntime; pip install onnxruntime") from None
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
            raise ModelError(f"{path}: not a usable ONNX graph ({first_line(exc)}); export the model again") from exc
        self.spec = ModelSpec(ONNX, str(path.parent))
        self.dim, self.min_samples, self.max_window_s = n_labels, min_samples, max_window_s
        self.sample_rate = sample_rate  # what ``audio`` holds: windows are decoded at it
        self.identity = f"onnx-{_digest(path)}"  # the graph's bytes: the embedding cache's key
        self.identities = Identities(self.identity)

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), 1, self.dim), dtype=np.float32)
        for i, window in enumerate(windows):
            audio = np.ascontiguousarray(window, dtype=np.float32)[None, :]
            out[i, 0] = self._session.run([OUTPUT], {INPUT: audio})[0][0]
        return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:24]
