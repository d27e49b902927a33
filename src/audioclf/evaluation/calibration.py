"""How far predicted probabilities are from observed frequencies: ECE, Brier score, NLL, reliability bins."""

from __future__ import annotations

import numpy as np

from audioclf.evaluation.report_types import CalibrationScores, ReliabilityBin

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(1, keepdims=True))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax) over the last axis, computed stably in float32."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(-1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(-1, keepdims=True)), dtype=np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Per-label probabilities of a multi-label model."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))))


def reliability_bins(edges: np.ndarray, stats: list[tuple[int, float, float]]) -> list[ReliabilityBin]:
    """Per confidence bin (of the top label): its range, count, mean confidence and accuracy (NaN when empty)."""
    return [
        {"low": float(edges[b]), "high": float(edges[b + 1]), "n": n, "confidence": confidence, "accuracy": accuracy}
        for b, (n, confidence, accuracy) in enumerate(stats)
    ]


def _bin_stats(probs: np.ndarray, true: np.ndarray, edges: np.ndarray) -> list[tuple[int, float, float]]:
    """(count, mean confidence, accuracy) of each bin between ``edges``."""
    n_bins = len(edges) - 1
    confidence, correct = probs.max(1), (probs.argmax(1) == true).astype(np.float64)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    stats = []
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        nan = float("nan")
        stats.append((n, float(confidence[inside].mean()) if n else nan, float(correct[inside].mean()) if n else nan))
    return stats


def calibration_metrics(logits: np.ndarray, true: np.ndarray) -> CalibrationScores:
    """ECE (15 bins, top label), multi-class Brier score and mean negative log-likelihood of ``true``."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    true = np.asarray(true, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    stats = _bin_stats(probs, true, edges)
    ece = sum(n * abs(accuracy - confidence) for n, confidence, accuracy in stats if n) / max(1, len(true))
    onehot = np.eye(probs.shape[1])[true]
    brier = float(((probs - onehot) ** 2).sum(1).mean())
    nll = float(-np.log(np.clip(probs[np.arange(len(true)), true], 1e-12, 1.0)).mean())
    return {"ece": float(ece), "brier": brier, "nll": nll, "bins": reliability_bins(edges, stats)}
