"""How a window's vector is compared with a query's: chosen once (``Similarity``, ``Combine``) and applied here.

Every similarity is a dot product of unit vectors after a transform of the raw embedding:

- ``cosine``: the raw vector, L2-normalised;
- ``centered``: minus the index's mean vector, then normalised;
- ``standardized``: minus the index's mean and divided by its per-dimension spread, then normalised.

The statistics are the index's own (``VectorStats``), so a query is transformed exactly as the windows were.
An example (a clip or a time range of one) is one direction, the mean of its windows. Several examples are
combined by the ``mean`` of their directions (one query direction) or by the ``max`` over them (a window close
to any example scores high); negatives subtract ``NEGATIVE_WEIGHT`` times their combined score.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from audioclf.fileio import JSONObject

_EPS = 1e-6
# Negatives subtract a quarter of their score (Rocchio's classic weight for non-relevant examples): at full
# weight they lowered mAP in 8 of 12 settings; at 0.25 they never did and helped FSDD (+0.016), measured with
# three random other-label negatives (bench/search_quality.py). A user's chosen negatives are harder than those.
NEGATIVE_WEIGHT = 0.25
_CHUNK = 65_536


class Similarity(enum.StrEnum):
    COSINE = "cosine"
    CENTERED = "centered"
    STANDARDIZED = "standardized"


# Standardised cosine beat plain cosine in 67 of 84 paired comparisons (FSDD, ESC-dev, spoken topics; built-in
# encoder and Whisper base, last and middle layer; 1, 3 and 5 examples), tied in 7 and lost 10, by up to +0.5 mAP
# on the built-in encoder (bench/search_quality.py; the README's table).
DEFAULT_SIMILARITY = Similarity.STANDARDIZED


class Combine(enum.StrEnum):
    MEAN = "mean"
    MAX = "max"


@dataclass(frozen=True)
class VectorStats:
    """Mean and spread of every dimension over the windows of an index."""

    mean: np.ndarray  # [dim] float32
    scale: np.ndarray  # [dim] float32, > 0

    @classmethod
    def of(cls, vectors: np.ndarray) -> VectorStats:
        x = np.asarray(vectors, dtype=np.float32)
        if len(x) == 0:
            raise ValueError("no vectors to take statistics of")
        mean = x.mean(axis=0, dtype=np.float64)
        var = np.zeros_like(mean)
        for start in range(0, len(x), _CHUNK):  # bounded memory: a million windows are never copied at once
            var += ((x[start : start + _CHUNK] - mean) ** 2).sum(axis=0)
        std = np.sqrt(var / len(x))
        floor = max(float(np.median(std)) * 1e-3, _EPS)  # a constant dimension must not blow up
        return cls(mean.astype(np.float32), np.maximum(std, floor).astype(np.float32))

    def to_dict(self) -> JSONObject:
        return {"mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}

    @classmethod
    def from_dict(cls, data: JSONObject) -> VectorStats:
        mean, scale = data.get("mean"), data.get("scale")
        if not isinstance(mean, list) or not isinstance(scale, list) or len(mean) != len(scale):
            raise ValueError("vector statistics: mean and scale must be lists of the same length")
        m = np.asarray(mean, dtype=np.float32)
        s = np.asarray(scale, dtype=np.float32)
        if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
            raise ValueError("vector statistics: not finite, or a scale that is not positive")
        return cls(m, s)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def prepare(vectors: np.ndarray, similarity: Similarity, stats: VectorStats | None) -> np.ndarray:
    """Raw ``[n, dim]`` vectors -> the unit vectors that ``similarity`` compares by dot product."""
    similarity = Similarity(similarity)  # a plain string from JSON or a form is the member it names
    x = np.asarray(vectors, dtype=np.float32)
    if similarity is Similarity.COSINE:
        return unit(x)
    if stats is None:
        raise ValueError(f"{similarity} similarity needs the index's vector statistics")
    if similarity is Similarity.CENTERED:
        return unit(x - stats.mean)
    return unit((x - stats.mean) / stats.scale)


def example_direction(prepared_windows: np.ndarray) -> np.ndarray:
    """One example (a clip, or a time range of it) as one direction: the normalised mean of its windows."""
    w = np.atleast_2d(prepared_windows)
    if not len(w):
        raise ValueError("an example with no windows")
    return unit(w.mean(axis=0))


def combined(examples: np.ndarray, combine: Combine) -> np.ndarray:
    """The directions to search with, from one direction per example: their normalised mean, or each of them
    (``max``: a window close to any example scores high)."""
    q = np.atleast_2d(examples)
    if not len(q):
        raise ValueError("no examples to search with")
    return unit(q.mean(axis=0, keepdims=True)) if Combine(combine) is Combine.MEAN else q


def scores(
    windows: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray | None = None,
    combine: Combine = Combine.MEAN,
    negative_weight: float | None = None,
) -> np.ndarray:
    """The score of every prepared window against example directions (one per example): [n_windows] float32.
    Negatives subtract ``negative_weight`` times their own combined score."""
    s = _side(windows, positives, combine)
    if negatives is not None and len(negatives):
        weight = NEGATIVE_WEIGHT if negative_weight is None else negative_weight
        s = s - weight * _side(windows, negatives, combine)
    return s


def _side(windows: np.ndarray, examples: np.ndarray, combine: Combine) -> np.ndarray:
    sims = windows @ combined(examples, combine).T  # [n_windows, n_directions]
    return sims.max(axis=1) if sims.shape[1] > 1 else sims[:, 0]
