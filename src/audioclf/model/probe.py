"""A trained probe as plain arrays: ``ProbeHead``'s inference (z-score, layer choice, linear or one-hidden-layer
ReLU classifier) in numpy, read from the same ``head.safetensors``.

Training fits a torch ``ProbeHead``; everything that applies a saved model (``predict``, ``evaluate``, the
server, the novelty check) goes through this instead, so labelling with the built-in encoder never imports
torch (about 2 s of start-up here). A test checks both give the same logits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from audioclf.errors import ModelError, first_line
from audioclf.fileio import atomic_path
from audioclf.model.probe_config import LAST, MEAN, WEIGHTED, ProbeConfig


class TorchHead(Protocol):
    """What ``from_head`` reads from a ``ProbeHead`` (without importing torch here)."""

    config: ProbeConfig

    def state_dict(self) -> Mapping[str, Any]: ...


def _linear_keys(config: ProbeConfig) -> list[str]:
    """The state-dict names of the classifier's linear layers (``nn.Sequential`` indices, dropout between)."""
    return ["classifier.1", "classifier.4"] if config.hidden else ["classifier.1"]


@dataclass(frozen=True)
class HeadArrays:
    config: ProbeConfig
    mean: np.ndarray  # [n_layers, dim] training mean per (layer, feature)
    std: np.ndarray  # [n_layers, dim]
    layer_logits: np.ndarray  # [n_layers], used by the "weighted" layer choice
    linears: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight [out, in], bias [out]) per linear layer

    @property
    def n_layers(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.linears[-1][0].shape[0])

    def pool(self, x: np.ndarray) -> np.ndarray:
        """[n, n_layers, dim] embeddings -> [n, dim] probe input: z-scored, then the configured layer choice."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.std
        layer = self.config.layer
        if layer == WEIGHTED:
            w = np.exp(self.layer_logits - self.layer_logits.max())
            return np.asarray(np.einsum("l,nld->nd", w / w.sum(), z), dtype=np.float32)
        if layer == MEAN:
            return np.asarray(z.mean(1), dtype=np.float32)
        return np.asarray(z[:, -1 if layer == LAST else int(layer)], dtype=np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """[n, n_layers, dim] -> [n, n_classes] (dropout is off, as in evaluation)."""
        return self.classify(self.pool(x))

    def classify(self, h: np.ndarray) -> np.ndarray:
        """[n, dim] probe input (z-scored, one layer or their mix) -> [n, n_classes]."""
        for i, (weight, bias) in enumerate(self.linears):
            h = h @ weight.T + bias
            if i < len(self.linears) - 1:
                h = np.maximum(h, 0.0)
        return np.asarray(h, dtype=np.float32).reshape(len(h), self.n_classes)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays under ``ProbeHead``'s state-dict names."""
        out = {"mean": self.mean, "std": self.std, "layer_logits": self.layer_logits}
        for key, (weight, bias) in zip(_linear_keys(self.config), self.linears, strict=True):
            out[f"{key}.weight"], out[f"{key}.bias"] = weight, bias
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            save_file(self.state(), str(tmp))

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], config: ProbeConfig) -> HeadArrays:
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        linears = tuple((arrays[f"{k}.weight"], arrays[f"{k}.bias"]) for k in _linear_keys(config))
        return cls(config, arrays["mean"], arrays["std"], arrays["layer_logits"], linears)

    @classmethod
    def from_head(cls, head: TorchHead) -> HeadArrays:
        """The arrays of a fitted torch ``ProbeHead``."""
        state = {k: v.detach().cpu().float().numpy() for k, v in head.state_dict().items()}
        return cls.from_state(state, head.config)

    @classmethod
    def load(cls, path: Path, n_layers: int, dim: int, n_classes: int, config: ProbeConfig) -> HeadArrays:
        """Read ``path``; missing, damaged or mis-shaped weights are one ModelError."""
        try:
            head = cls.from_state(load_file(str(path)), config)
        except (OSError, SafetensorError, KeyError) as exc:
            raise ModelError(f"{path}: missing or damaged weights ({first_line(exc)}); retrain the model") from exc
        shapes = [head.mean.shape, head.std.shape, head.layer_logits.shape, head.linears[0][0].shape[1:]]
        if shapes != [(n_layers, dim), (n_layers, dim), (n_layers,), (dim,)] or head.n_classes != n_classes:
            raise ModelError(f"{path}: weights do not match the model config; retrain the model")
        return head
