"""The saved novelty detector and what it reads: the Mahalanobis distance from a recording's pooled probe
features to the nearest class mean, over the threshold chosen at training (fitted by ``novelty``). numpy only,
so labelling needs neither torch nor scikit-learn.

The precision (inverse covariance) is held as ``isotropic`` times the identity plus a correction along a few
orthonormal ``components``: P = iso I + Cᵀ diag(w) C. A shrunk covariance fitted on n recordings has exactly
this form with at most n components, so the d x d matrix is never formed (nor inverted, nor factored)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from audioclf.errors import ModelError
from audioclf.evaluation.pooling import recording_mean
from audioclf.fileio import atomic_path
from audioclf.model.card import NoveltyCard
from audioclf.model.probe import HeadArrays

NOVELTY_NAME = "novelty.safetensors"
CONTEXT_NOVELTY_NAME = "context_novelty.safetensors"  # the detector of the head trained with clips in context
KEEP_KNOWN = 0.95  # share of held-out training recordings (and of correct answers) a threshold keeps


def probe_features(head: HeadArrays, x: np.ndarray) -> np.ndarray:
    """The probe's own input per window (z-scored, its layer choice)."""
    return np.asarray(head.pool(x), dtype=np.float64)


def unit_means(features: np.ndarray, recording: np.ndarray | None) -> np.ndarray:
    """Window features averaged per recording (None: each window alone), L2-normalised."""
    if recording is not None:
        features = recording_mean(features, recording)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.asarray(features / np.maximum(norms, 1e-12), dtype=np.float32)


def recording_features(head: HeadArrays, x: np.ndarray, recording: np.ndarray | None) -> np.ndarray:
    """The probe's own input, averaged per recording (None: per window) and L2-normalised."""
    return unit_means(probe_features(head, x), recording)


@dataclass(frozen=True)
class Precision:
    """P = isotropic I + componentsᵀ diag(weights) components: ``components`` [rank, dim] are orthonormal
    directions of the training features (a square root of the matrix for models saved before this form)."""

    components: np.ndarray
    weights: np.ndarray
    isotropic: float

    @classmethod
    def from_matrix(cls, precision: np.ndarray) -> Precision:
        """A full d x d precision, as models saved before the low-rank form hold it: P = L Lᵀ, components Lᵀ."""
        try:
            root = np.linalg.cholesky(precision)
        except np.linalg.LinAlgError:  # not quite positive definite after float32 storage: any square root does
            w, v = np.linalg.eigh(precision)
            root = v * np.sqrt(np.clip(w, 0.0, None))
        return cls(np.ascontiguousarray(root.T), np.ones(len(precision)), 0.0)


@dataclass(frozen=True)
class Novelty:
    means: np.ndarray  # [n_classes, dim] class means of the training recordings' features
    precision: Precision  # inverse of the shared within-class covariance
    threshold: float  # a distance above this: unlike the training audio

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` to its nearest class mean:
        iso |x - m|² + Σ_k w_k (c_k·x - c_k·m)², from one projection of the rows on the components."""
        p = self.precision
        x = features.astype(np.float64)
        centres, centre_norms = self._centres
        xc = x @ p.components.T
        x_norms = (x * x).sum(1)
        best = np.full(len(x), np.inf)
        for mean, centre, norm in zip(self.means, centres, centre_norms, strict=True):
            squared = np.maximum(x_norms - 2.0 * (x @ mean) + norm, 0.0)
            best = np.minimum(best, p.isotropic * squared + ((xc - centre) ** 2) @ p.weights)
        return np.maximum(best, 0.0)

    @cached_property
    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The class means projected on the components, and their squared norms, computed once."""
        return self.means @ self.precision.components.T, (self.means * self.means).sum(1)

    def card(self) -> NoveltyCard:
        return NoveltyCard(self.threshold, KEEP_KNOWN)

    def save(self, out: Path, name: str = NOVELTY_NAME) -> None:
        p = self.precision
        tensors: dict[str, np.ndarray] = {  # C order: safetensors writes a transposed array's buffer as it lies
            "means": np.ascontiguousarray(self.means, dtype=np.float32),
            "components": np.ascontiguousarray(p.components, dtype=np.float32),
            "weights": np.ascontiguousarray(p.weights, dtype=np.float64),
            "isotropic": np.array([p.isotropic], dtype=np.float64),
        }
        with atomic_path(out / name) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, folder: Path, threshold: float, name: str = NOVELTY_NAME) -> Novelty:
        """The saved detector: the low-rank form, or the full precision matrix of models saved before it."""
        try:
            t = load_file(str(folder / name))
            if "precision" in t:
                precision = Precision.from_matrix(t["precision"].astype(np.float64))
            else:
                components = t["components"].astype(np.float64)
                precision = Precision(components, t["weights"].astype(np.float64), float(t["isotropic"][0]))
            return cls(t["means"].astype(np.float64), precision, threshold)
        except (OSError, KeyError, ValueError, IndexError, TypeError, SafetensorError) as exc:
            raise ModelError(f"{folder / name}: unreadable ({exc}); retrain the model") from None
