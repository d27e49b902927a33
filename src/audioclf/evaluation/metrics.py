"""Evaluation: recording- and window-level metrics with cluster-bootstrap CIs (files: report.py)."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from audioclf.errors import AudioclfError
from audioclf.evaluation.calibration import calibration_metrics, softmax
from audioclf.evaluation.report_types import ClassificationReport, ErrorRow, LevelReport
from audioclf.evaluation.window_logits import WindowLogits, recording_logits

logger = logging.getLogger(__name__)

MAX_ERRORS = 20
_BOOTSTRAP_CHUNK = 1_000_000  # max resampled cluster indices held in memory at once


def _codes(values: NDArray[Any]) -> NDArray[np.int64]:
    """Compact integer codes 0..k-1 for arbitrary values."""
    _, inverse = np.unique(values, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def _bootstrap_ci(
    correct: NDArray[np.bool_], clusters: NDArray[np.int64], boot: tuple[int, float, np.random.Generator]
) -> list[float] | None:
    """Percentile CI of accuracy, resampling whole clusters with replacement.

    Each replicate's accuracy is (correct items in the drawn clusters) / (items in the drawn clusters),
    i.e. exactly ``accuracy_score`` on the concatenated resample, computed by counting for speed.
    """
    n_bootstrap, ci, rng = boot
    if n_bootstrap <= 0 or len(correct) == 0:
        return None
    k = int(clusters.max()) + 1
    hits = np.bincount(clusters, weights=correct.astype(np.float64), minlength=k)
    sizes = np.bincount(clusters, minlength=k).astype(np.float64)
    stats = np.empty(n_bootstrap, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK // k)
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        idx = rng.integers(0, k, size=(stop - start, k))
        stats[start:stop] = hits[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.percentile(stats, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return [float(lo), float(hi)]


def _pick_clusters(candidates: list[tuple[str, NDArray[np.int64]]]) -> tuple[str, NDArray[np.int64]]:
    """First candidate clustering with at least two clusters, else the last (finest) one."""
    for name, codes in candidates:
        if len(codes) and int(codes.max()) >= 1:
            return name, codes
    return candidates[-1]


def _level_metrics(
    y_true: NDArray[np.int64],
    y_pred: NDArray[np.int64],
    clusters: tuple[str, NDArray[np.int64]],
    labels: list[str],
    boot: tuple[int, float, np.random.Generator],
) -> LevelReport:
    class_ids = list(range(len(labels)))
    with warnings.catch_warnings():
        # e.g. "y_pred contains classes not in y_true": expected when a class is absent from the test set
        warnings.simplefilter("ignore")
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=class_ids, zero_division=0
        )
        accuracy = float(accuracy_score(y_true, y_pred))
        accuracy_ci = _bootstrap_ci(y_true == y_pred, clusters[1], boot)
        balanced = float(balanced_accuracy_score(y_true, y_pred))
        macro_f1 = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    result: LevelReport = {
        "n": len(y_true),
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "ci_resamples": clusters[0],
        "balanced_accuracy": balanced,
        "macro_f1": macro_f1,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=class_ids).tolist(),
    }
    return result


def _errors(
    preds: WindowLogits, rec_idx: NDArray[np.int64], rec_logits: NDArray[np.float64]
) -> tuple[list[ErrorRow], int]:
    true = np.asarray(preds.recording_true, dtype=np.int64)[rec_idx]
    pred = rec_logits.argmax(axis=1)
    conf = softmax(rec_logits).max(axis=1)  # the probability of the predicted class
    wrong = np.flatnonzero(pred != true)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:MAX_ERRORS]
    errors: list[ErrorRow] = [
        {
            "recording": preds.recordings[int(rec_idx[i])],
            "true": preds.labels[int(true[i])],
            "predicted": preds.labels[int(pred[i])],
            "confidence": float(conf[i]),
        }
        for i in order
    ]
    return errors, len(wrong)


def _included_recordings(preds: WindowLogits, rec_logits: NDArray[np.float64]) -> NDArray[np.int64]:
    """Indices of recordings with a known label and at least one window; raise if there are none."""
    labelled = np.asarray(preds.recording_true) >= 0
    has_windows = ~np.isnan(rec_logits).any(axis=1)
    if not labelled.any():
        raise AudioclfError("no recording has a known label: cannot evaluate (all recording_true are -1)")
    if not (labelled & has_windows).any():
        raise AudioclfError("no labelled recording has any prediction windows: cannot evaluate")
    if (labelled & ~has_windows).any():
        logger.warning("%d labelled recordings have no windows; excluded", int((labelled & ~has_windows).sum()))
    return np.flatnonzero(labelled & has_windows).astype(np.int64)


def compute_report(
    preds: WindowLogits, *, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95
) -> ClassificationReport:
    """JSON-serialisable evaluation report (plain Python numbers only, None where undefined).

    Keys: labels, n_groups, n_recordings_total, n_recordings_excluded, ci, n_bootstrap, seed, n_errors,
    errors (up to 20 misclassified recordings, most confident first), and the levels "recording" and
    "window", each with n, accuracy, accuracy_ci, ci_resamples, balanced_accuracy, macro_f1, per_class,
    confusion. Recordings with unknown truth (-1) or without windows are excluded from every metric.
    Accuracy CIs resample groups (cluster bootstrap); with a single group they resample recordings
    (and, at window level with a single recording, windows).
    """
    if not 0.0 < ci < 1.0:
        raise AudioclfError(f"ci must be between 0 and 1 (exclusive), got {ci}")
    if n_bootstrap < 0:
        raise AudioclfError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    rec_logits = recording_logits(preds).astype(np.float64)
    rec_idx = _included_recordings(preds, rec_logits)
    true_all = np.asarray(preds.recording_true, dtype=np.int64)
    groups_all = _codes(np.asarray(preds.recording_groups, dtype=object).astype(str))
    rng_rec, rng_win = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    rec_pred = rec_logits[rec_idx].argmax(axis=1).astype(np.int64)
    rec_clusters = _pick_clusters(
        [("groups", _codes(groups_all[rec_idx])), ("recordings", np.arange(len(rec_idx), dtype=np.int64))]
    )
    recording = _level_metrics(true_all[rec_idx], rec_pred, rec_clusters, preds.labels, (n_bootstrap, ci, rng_rec))
    if len(rec_idx):  # how well the probabilities match the accuracy (temperature scaling is meant to fix this)
        recording["calibration"] = calibration_metrics(rec_logits[rec_idx], true_all[rec_idx])

    win_mask = np.isin(np.asarray(preds.window_recording), rec_idx)
    win_rec = np.asarray(preds.window_recording, dtype=np.int64)[win_mask]
    win_pred = np.asarray(preds.window_logits)[win_mask].argmax(axis=1).astype(np.int64)
    win_clusters = _pick_clusters(
        [
            ("groups", _codes(groups_all[win_rec])),
            ("recordings", _codes(win_rec)),
            ("windows", np.arange(len(win_rec), dtype=np.int64)),
        ]
    )
    window = _level_metrics(true_all[win_rec], win_pred, win_clusters, preds.labels, (n_bootstrap, ci, rng_win))

    errors, n_errors = _errors(preds, rec_idx, rec_logits[rec_idx])
    report: ClassificationReport = {
        "labels": list(preds.labels),
        "n_groups": len(np.unique(groups_all[rec_idx])),
        "n_recordings_total": len(preds.recordings),
        "n_recordings_excluded": len(preds.recordings) - len(rec_idx),
        "ci": ci,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "recording": recording,
        "window": window,
        "n_errors": n_errors,
        "errors": errors,
    }
    plain: ClassificationReport = jsonable(report)  # the same keys, numpy numbers as Python's, NaN as None
    return plain


def jsonable(value: Any) -> Any:
    """Recursively convert to plain JSON types: numpy -> Python, NaN/inf -> None, Path -> str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def view_reports(preds: WindowLogits) -> dict[str, LevelReport]:
    """For a fused model: the recording-level metrics of each view alone (same recordings, same bootstrap)."""
    out: dict[str, LevelReport] = {}
    for name, logits in (preds.views or {}).items():
        if name != "fused":
            alone = replace(preds, window_logits=logits, views=None)
            out[name] = compute_report(alone)["recording"]
    return out
