"""The saved novelty detector and what it reads: the Mahalanobis distance from a recording's pooled probe
features to the nearest class mean, over the threshold chosen at training (fitted by ``novelty``). numpy only,
so labelling needs neither torch nor scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from audioclf.errors import ModelError
from audioclf.fileio import atomic_path
from audioclf.training.head_arrays import HeadArrays

NOVELTY_NAME = "novelty.safetensors"
KEEP_KNOWN = 0.95  # share of held-out training recordings (and of correct answers) a threshold keeps


def probe_features(head: HeadArrays, x: np.ndarray) -> np.ndarray:
    """The probe's own input per window (z-scored, its layer choice)."""
    return np.asarray(head.pool(x), dtype=np.float64)


def unit_means(features: np.ndarray, recording: np.ndarray | None) -> np.ndarray:
    """Window features averaged per recording (None: each window alone), L2-normalised."""
    if recording is not None:  # numpy: torch's index_add_ cost 7 ms a call here for a handful of rows
        sums = np.zeros((int(recording.max()) + 1, features.shape[1]))
        np.add.at(sums, recording, features)
        features = sums / np.bincount(recording)[:, None]
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.asarray(features / np.maximum(norms, 1e-12), dtype=np.float32)


def recording_features(head: HeadArrays, x: np.ndarray, recording: np.ndarray | None) -> np.ndarray:
    """The probe's own input, averaged per recording (None: per window) and L2-normalised."""
    return unit_means(probe_features(head, x), recording)


@dataclass(frozen=True)
class Novelty:
    means: np.ndarray  # [n_classes, dim] class means of the training recordings' features
    precision: np.ndarray  # [dim, dim] inverse of the shared within-class covariance
    threshold: float  # a distance above this: unlike the training audio

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` to its nearest class mean: with the
        precision P = L L^T, the squared Euclidean distance between x L and mean L."""
        root, centres = self._root
        z = features.astype(np.float64) @ root
        best = np.full(len(features), np.inf)
        for centre in centres:
            best = np.minimum(best, ((z - centre) ** 2).sum(1))
        return best

    @cached_property
    def _root(self) -> tuple[np.ndarray, np.ndarray]:
        """A square root L of the precision (P = L L^T) and the class means times L, computed once."""
        try:
            root = np.linalg.cholesky(self.precision)
        except np.linalg.LinAlgError:  # not quite positive definite after float32 storage: any square root does
            w, v = np.linalg.eigh(self.precision)
            root = np.asarray(v * np.sqrt(np.clip(w, 0.0, None)))
        return root, self.means @ root

    def meta(self) -> dict[str, Any]:
        return {"method": "mahalanobis", "threshold": self.threshold, "keeps_held_out": KEEP_KNOWN}

    def save(self, out: Path) -> None:
        tensors = {"means": self.means.astype(np.float32), "precision": self.precision.astype(np.float32)}
        with atomic_path(out / NOVELTY_NAME) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Novelty:
        try:
            tensors = load_file(str(folder / NOVELTY_NAME))
            return cls(tensors["means"].astype(np.float64), tensors["precision"].astype(np.float64), meta["threshold"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{folder / NOVELTY_NAME}: unreadable ({exc}); retrain the model") from None
