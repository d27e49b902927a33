"""How unlike the training audio a recording is, for an ``unknown`` answer that max-softmax cannot give: the
Mahalanobis distance from the recording's pooled probe features to the nearest class mean under one shared
(Ledoit-Wolf) covariance (Lee et al., 2018), against a threshold that keeps most recordings of unseen groups.

The shrunk covariance (1 - a) S + a·mu·I is the one scikit-learn's ``LedoitWolf`` fits, but it is inverted
from an eigendecomposition of the smaller of the n x n and d x d products of the within-class residuals (n
recordings, d features), never of a d x d matrix when n < d: the same distances, at a fraction of the cost.

bench/ood_fsdd.py compares it with max-softmax, energy and k-nearest-neighbour distance; it separated spoken
digits of a new speaker from synthesised non-speech best. It also times this fit against the d x d one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from sklearn.model_selection import GroupKFold

from audioclf.evaluation.calibration import softmax
from audioclf.fitting.data import Dataset
from audioclf.model.card import Abstain
from audioclf.model.novelty import KEEP_KNOWN, Novelty, Precision, recording_features
from audioclf.model.probe import HeadArrays

MAX_FOLDS = 5  # group folds that set the threshold
MAX_AUTO_CONFIDENCE = 0.99


def _eigen(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """S = xᵀx / n of centred ``x`` [n, d] as orthonormal rows ``vt`` [rank, d] with variances ``lam`` [rank],
    and ||S||²_F. With fewer rows than features, S lives in the span of the rows: an orthonormal basis Q of it
    (Householder QR of xᵀ, d x n) and the n x n matrix Qᵀ S Q hold all of S (eigenvectors from the n x n Gram
    matrix instead would lose their orthogonality for small variances)."""
    n, dim = x.shape
    if n >= dim:
        covariance = x.T @ x / n
        lam, v = np.linalg.eigh(covariance)
        return np.clip(lam, 0.0, None), np.ascontiguousarray(v.T), float((covariance**2).sum())
    basis, _ = np.linalg.qr(x.T)  # [d, n]
    projected = x @ basis
    inner = projected.T @ projected / n
    lam, w = np.linalg.eigh(inner)
    return np.clip(lam, 0.0, None), np.ascontiguousarray((basis @ w).T), float((inner**2).sum())


def _ledoit_wolf_shrinkage(x: np.ndarray, squared_norm: float) -> float:
    """scikit-learn's ``ledoit_wolf_shrinkage`` of centred ``x``, from ||S||²_F instead of d x d products."""
    n, dim = x.shape
    sq = x * x
    trace = float(sq.sum()) / n
    mu = trace / dim
    beta = (float((sq.sum(1) ** 2).sum()) / n - squared_norm) / (dim * n)
    delta = (squared_norm - 2.0 * mu * trace + dim * mu**2) / dim
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


def shrunk_precision(residuals: np.ndarray) -> Precision:
    """The inverse of Ledoit-Wolf's shrunk covariance (1 - a) S + a·mu·I of ``residuals`` [n, d], centred here
    as scikit-learn's ``LedoitWolf`` does, and as its ``pinvh`` would give it (no precision for a variance at
    most its cut-off): a·mu·I everywhere but along the few directions the residuals span."""
    x = np.asarray(residuals, dtype=np.float64)
    x = x - x.mean(0)
    dim = x.shape[1]
    lam, vt, squared_norm = _eigen(x)
    shrinkage = _ledoit_wolf_shrinkage(x, squared_norm)
    isotropic = shrinkage * float((x * x).sum()) / len(x) / dim
    variances = (1.0 - shrinkage) * lam + isotropic
    cutoff = max(float(variances.max(initial=0.0)), isotropic) * dim * np.finfo(np.float64).eps

    def inverse(v: np.ndarray) -> np.ndarray:
        return np.where(v > cutoff, 1.0 / np.maximum(v, cutoff), 0.0)

    outside = float(inverse(np.array([isotropic]))[0]) if len(lam) < dim else 0.0
    return Precision(vt, inverse(variances) - outside, outside)


Estimate = Callable[[np.ndarray], Precision]  # within-class residuals [n, d] -> the shared precision


def _fit(features: np.ndarray, y: np.ndarray, n_classes: int, estimate: Estimate) -> tuple[np.ndarray, Precision]:
    present = [c for c in range(n_classes) if (y == c).any()]
    means = np.zeros((n_classes, features.shape[1]))
    means[present] = [features[y == c].mean(0) for c in present]
    return means[present], estimate(features - means[y])


def fit_novelty(
    features: np.ndarray, y: np.ndarray, groups: Sequence[str], estimate: Estimate = shrunk_precision
) -> Novelty | None:
    """Class means and covariance of every training recording; the threshold is the ``KEEP_KNOWN`` quantile of
    the distances of recordings held out by group (up to ``MAX_FOLDS`` folds) from statistics without their
    group, so it keeps unseen speakers or videos (None with fewer than two groups). ``estimate``: another
    covariance estimator (bench/ood_fsdd.py compares them)."""
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(group_ids.max(initial=0)) + 1
    if n_groups < 2 or len(features) < 4:
        return None
    n_classes = int(y.max()) + 1
    held_out = np.empty(len(features))
    for train, held in GroupKFold(min(MAX_FOLDS, n_groups)).split(features, groups=group_ids):
        means, precision = _fit(features[train], y[train], n_classes, estimate)
        held_out[held] = Novelty(means, precision, 0.0).distances(features[held])
    means, precision = _fit(features, y, n_classes, estimate)
    return Novelty(means, precision, float(np.quantile(held_out, KEEP_KNOWN)))


def confidence_threshold(probs: np.ndarray, true: np.ndarray) -> float | None:
    """The probability that keeps ``KEEP_KNOWN`` of the correct answers (out-of-fold, calibrated)."""
    correct = probs.argmax(1) == true
    if not correct.any():
        return None
    # a separable training set puts every correct probability at ~1: a threshold there would refuse answers
    # that differ from it in the fifth decimal
    return min(float(np.quantile(probs.max(1)[correct], 1.0 - KEEP_KNOWN)), MAX_AUTO_CONFIDENCE)


def fit_confidence(logits: np.ndarray, true: np.ndarray, temperature: float, fitted_on: str) -> Abstain:
    """What ``unknown`` means without a novelty detector: the threshold on held-out recording logits."""
    held = np.isfinite(logits).all(1)
    threshold = confidence_threshold(softmax(logits[held] / temperature), true[held]) if held.any() else None
    return Abstain(threshold, KEEP_KNOWN, fitted_on)


def fit_abstain(
    head: HeadArrays, data: Dataset, oof: np.ndarray, temperature: float, *, acoustic: bool
) -> tuple[Abstain, Novelty | None]:
    """What ``unknown`` means for this probe: the calibrated probability that keeps ``KEEP_KNOWN`` of the
    correct out-of-fold answers, and (for acoustic probes) the Mahalanobis novelty detector."""
    y = data.recording_labels()
    n_held = int(np.isfinite(oof).all(1).sum())
    abstain = fit_confidence(
        oof, y, temperature, f"out-of-fold recording probabilities of {n_held} training recordings"
    )
    novelty = None
    if acoustic:
        features = recording_features(head, data.x.numpy(), data.recording)
        novelty = fit_novelty(features, y, [item.group for item in data.items])
    return replace(abstain, novelty=novelty.card() if novelty is not None else None), novelty
