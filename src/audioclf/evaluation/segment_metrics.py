"""Predicted segments against annotated ones: frame-level accuracy and F1 over the annotated time, and
event-based F1 (a predicted segment counts when its label matches and its onset lies within a collar)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from audioclf.evaluation.report_types import SegmentScores
from audioclf.evaluation.segments import UNKNOWN, Segment

FRAME_S = 0.1  # resolution of the frame-level comparison
ONSET_COLLAR_S = 1.0  # how far a predicted onset may be from the annotated one


def frame_labels(segments: Sequence[Segment], n_frames: int, labels: Sequence[str]) -> np.ndarray:
    """One label index per ``FRAME_S`` frame (by its middle); -1 where no segment covers it."""
    out = np.full(n_frames, -1, dtype=np.int64)
    index = {label: i for i, label in enumerate(labels)}
    middles = (np.arange(n_frames) + 0.5) * FRAME_S
    for s in segments:
        out[(middles >= s.start_s) & (middles < s.end_s)] = index.get(s.label, len(labels))
    return out


def matched_events(reference: Sequence[Segment], predicted: Sequence[Segment], collar_s: float) -> int:
    """Reference and predicted segments paired one to one (same label, onsets within ``collar_s``), nearest
    onsets first."""
    pairs = sorted(
        (abs(r.start_s - p.start_s), i, j)
        for i, r in enumerate(reference)
        for j, p in enumerate(predicted)
        if r.label == p.label and abs(r.start_s - p.start_s) <= collar_s
    )
    used_r: set[int] = set()
    used_p: set[int] = set()
    for _, i, j in pairs:
        if i not in used_r and j not in used_p:
            used_r.add(i)
            used_p.add(j)
    return len(used_r)


def segment_report(
    recordings: Sequence[tuple[Sequence[Segment], Sequence[Segment]]],
    labels: Sequence[str],
    collar_s: float = ONSET_COLLAR_S,
) -> SegmentScores:
    """Scores over (reference, predicted) segment lists of several recordings."""
    true_frames, pred_frames = [], []
    hits = n_ref = n_pred = 0
    per_class = {label: [0, 0, 0] for label in labels}  # hits, reference, predicted
    for reference, predicted in recordings:
        end = max([s.end_s for s in [*reference, *predicted]], default=0.0)
        n = int(np.ceil(end / FRAME_S))
        t, p = frame_labels(reference, n, labels), frame_labels(predicted, n, labels)
        annotated = t >= 0
        true_frames.append(t[annotated])
        pred_frames.append(p[annotated])
        shown = [s for s in predicted if s.label != UNKNOWN]
        hits += matched_events(reference, shown, collar_s)
        n_ref, n_pred = n_ref + len(reference), n_pred + len(shown)
        for label, counts in per_class.items():
            ref = [s for s in reference if s.label == label]
            pred = [s for s in shown if s.label == label]
            counts[0] += matched_events(ref, pred, collar_s)
            counts[1] += len(ref)
            counts[2] += len(pred)
    t, p = np.concatenate(true_frames), np.concatenate(pred_frames)
    event_f1 = {label: _f1(*counts) for label, counts in per_class.items() if counts[1] or counts[2]}
    return {
        "n_recordings": len(recordings),
        "frame": {
            "seconds": float(len(t) * FRAME_S),
            "frame_s": FRAME_S,
            "accuracy": float(accuracy_score(t, p)) if len(t) else float("nan"),
            "macro_f1": float(f1_score(t, p, labels=np.unique(t), average="macro", zero_division=0))
            if len(t)
            else float("nan"),
        },
        "event": {
            "onset_collar_s": collar_s,
            "n_reference": n_ref,
            "n_predicted": n_pred,
            "precision": hits / n_pred if n_pred else 0.0,
            "recall": hits / n_ref if n_ref else 0.0,
            "f1": _f1(hits, n_ref, n_pred),
            "macro_f1": float(np.mean(list(event_f1.values()))) if event_f1 else 0.0,
            "per_class_f1": event_f1,
        },
    }


def _f1(hits: int, n_ref: int, n_pred: int) -> float:
    return 2 * hits / (n_ref + n_pred) if n_ref + n_pred else 0.0
