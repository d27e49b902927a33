"""How unlike the training audio a recording is, for an ``unknown`` answer that max-softmax cannot give: the
Mahalanobis distance from the recording's pooled probe features to the nearest class mean under one shared
(Ledoit-Wolf) covariance (Lee et al., 2018), against a threshold that keeps most recordings of unseen groups.

bench/ood_fsdd.py compares it with max-softmax, energy and k-nearest-neighbour distance; it separated spoken
digits of a new speaker from synthesised non-speech best."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import GroupKFold

from audioclf.evaluation.calibration import softmax
from audioclf.training.data import Dataset
from audioclf.training.head_arrays import HeadArrays
from audioclf.training.novelty_detector import KEEP_KNOWN, Novelty, recording_features

MAX_FOLDS = 5  # group folds that set the threshold
MAX_AUTO_CONFIDENCE = 0.99


def _fit(features: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    present = [c for c in range(n_classes) if (y == c).any()]
    means = np.zeros((n_classes, features.shape[1]))
    means[present] = [features[y == c].mean(0) for c in present]
    covariance = LedoitWolf().fit(features - means[y])
    return means[present], covariance.precision_


def fit_novelty(features: np.ndarray, y: np.ndarray, groups: Sequence[str]) -> Novelty | None:
    """Class means and covariance of every training recording; the threshold is the ``KEEP_KNOWN`` quantile of
    the distances of recordings held out by group (up to ``MAX_FOLDS`` folds) from statistics without their
    group, so it keeps unseen speakers or videos (None with fewer than two groups)."""
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(group_ids.max(initial=0)) + 1
    if n_groups < 2 or len(features) < 4:
        return None
    n_classes = int(y.max()) + 1
    held_out = np.empty(len(features))
    for train, held in GroupKFold(min(MAX_FOLDS, n_groups)).split(features, groups=group_ids):
        means, precision = _fit(features[train], y[train], n_classes)
        held_out[held] = Novelty(means, precision, 0.0).distances(features[held])
    means, precision = _fit(features, y, n_classes)
    return Novelty(means, precision, float(np.quantile(held_out, KEEP_KNOWN)))


def confidence_threshold(probs: np.ndarray, true: np.ndarray) -> float | None:
    """The probability that keeps ``KEEP_KNOWN`` of the correct answers (out-of-fold, calibrated)."""
    correct = probs.argmax(1) == true
    if not correct.any():
        return None
    # a separable training set puts every correct probability at ~1: a threshold there would refuse answers
    # that differ from it in the fifth decimal
    return min(float(np.quantile(probs.max(1)[correct], 1.0 - KEEP_KNOWN)), MAX_AUTO_CONFIDENCE)


def confidence_meta(logits: np.ndarray, true: np.ndarray, temperature: float, fitted_on: str) -> dict[str, Any]:
    """The saved ``abstain`` block without a novelty detector: the threshold on held-out recording logits."""
    held = np.isfinite(logits).all(1)
    threshold = confidence_threshold(softmax(logits[held] / temperature), true[held]) if held.any() else None
    return {"min_confidence": threshold, "keeps_correct": KEEP_KNOWN, "fitted_on": fitted_on, "novelty": None}


def fit_abstain(
    head: HeadArrays, data: Dataset, oof: np.ndarray, temperature: float, *, acoustic: bool
) -> tuple[dict[str, Any], Novelty | None]:
    """What ``unknown`` means for this probe: the calibrated probability that keeps ``KEEP_KNOWN`` of the
    correct out-of-fold answers, and (for acoustic probes) the Mahalanobis novelty detector."""
    y = data.recording_labels()
    n_held = int(np.isfinite(oof).all(1).sum())
    meta = confidence_meta(oof, y, temperature, f"out-of-fold recording probabilities of {n_held} training recordings")
    novelty = None
    if acoustic:
        features = recording_features(head, data.x.numpy(), data.recording)
        novelty = fit_novelty(features, y, [item.group for item in data.items])
    return {**meta, "novelty": novelty.meta() if novelty is not None else None}, novelty
