"""Selective prediction: what answering only the confident (and familiar) recordings buys — the
risk-coverage curve (error among the answered, against the share answered) and the point at a threshold."""

from __future__ import annotations

import numpy as np

from audioclf.errors import AudioclfError
from audioclf.evaluation.calibration import softmax
from audioclf.evaluation.report_types import AbstainReport, CurvePoint, RiskCoverage, ThresholdPoint
from audioclf.evaluation.window_logits import WindowLogits, recording_logits

CURVE_POINTS = 101  # points kept from the curve (coverage in hundredths)


def checked_min_confidence(min_confidence: float | None) -> float | None:
    """A minimum confidence is a probability (None: never abstain)."""
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise AudioclfError(
            f"minimum confidence {min_confidence}: use a probability from 0 to 1", option="min_confidence"
        )
    return min_confidence


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """Answering the most confident first: for each coverage, the error rate among the answered, and the area
    under that curve (AURC; lower is better; an oracle that ranks every error last scores the lowest)."""
    n = len(confidence)
    if n == 0:
        return {"aurc": float("nan"), "curve": []}
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(~correct[order])
    answered = np.arange(1, n + 1)
    risk = errors / answered
    keep = np.unique(np.clip(np.round(np.linspace(0, n - 1, CURVE_POINTS)).astype(int), 0, n - 1))
    curve: list[CurvePoint] = [
        {"coverage": float(answered[i] / n), "risk": float(risk[i]), "threshold": float(confidence[order][i])}
        for i in keep
    ]
    return {"aurc": float(risk.mean()), "curve": curve}


def at_threshold(accepted: np.ndarray, correct: np.ndarray, threshold: float) -> ThresholdPoint:
    """Coverage (share answered, not ``unknown``) and the accuracy of the answered ones."""
    n_kept = int(accepted.sum())
    return {
        "min_confidence": threshold,
        "coverage": n_kept / len(accepted) if len(accepted) else float("nan"),
        "accuracy": float(correct[accepted].mean()) if n_kept else float("nan"),
        "n_unknown": int(len(accepted) - n_kept),
    }


def abstain_report(preds: WindowLogits, min_confidence: float | None) -> AbstainReport | None:
    """The curve over the labelled recordings (ranked by top probability) and, with ``min_confidence``, the
    point where predict answers: top probability at least ``min_confidence`` and, where the model has a novelty
    detector, novelty at most 1."""
    logits = recording_logits(preds)
    labelled = (np.asarray(preds.recording_true) >= 0) & np.isfinite(logits).all(1)
    if not labelled.any():
        return None
    probs = softmax(logits[labelled])
    correct = probs.argmax(1) == np.asarray(preds.recording_true)[labelled]
    report: AbstainReport = {"n": int(labelled.sum()), **risk_coverage(probs.max(1), correct)}
    if min_confidence is not None:
        accepted = probs.max(1) >= min_confidence
        if preds.recording_novelty is not None:
            accepted &= preds.recording_novelty[labelled] <= 1.0
        report["at_threshold"] = at_threshold(accepted, correct, min_confidence)
        report["at_threshold"]["novelty_detector"] = preds.recording_novelty is not None
    return report
