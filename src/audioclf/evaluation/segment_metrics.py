"""Predicted segments against annotated ones: frame-level accuracy and F1 over the annotated time, event-based
F1 (a predicted segment counts when its label matches and its onset lies within a collar, pairs matched one to
one), and the DCASE event- and segment-based scores (``event_metrics``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from audioclf.evaluation.event_metrics import EventScores, SegmentScores, event_based, segment_based
from audioclf.evaluation.report_types import SegmentScores as SegmentReportScores
from audioclf.evaluation.segments import UNKNOWN, Segment

FRAME_S = 0.1  # resolution of the frame-level comparison
ONSET_COLLAR_S = 0.5  # how far a predicted onset may be from the annotated one


def frame_labels(segments: Sequence[Segment], n_frames: int, labels: Sequence[str]) -> np.ndarray:
    """One label index per ``FRAME_S`` frame (by its middle); -1 where no segment covers it."""
    out = np.full(n_frames, -1, dtype=np.int64)
    index = {label: i for i, label in enumerate(labels)}
    middles = (np.arange(n_frames) + 0.5) * FRAME_S
    for s in segments:
        out[(middles >= s.start_s) & (middles < s.end_s)] = index.get(s.label, len(labels))
    return out


def segment_report(
    recordings: Sequence[tuple[Sequence[Segment], Sequence[Segment]]],
    labels: Sequence[str],
    collar_s: float = ONSET_COLLAR_S,
) -> SegmentReportScores:
    """Scores over (reference, predicted) segment lists of several recordings."""
    true_frames, pred_frames = [], []
    onsets, events, segments = [], [], []
    for reference, predicted in recordings:
        end = max([s.end_s for s in [*reference, *predicted]], default=0.0)
        n = int(np.ceil(end / FRAME_S))
        t, p = frame_labels(reference, n, labels), frame_labels(predicted, n, labels)
        annotated = t >= 0
        true_frames.append(t[annotated])
        pred_frames.append(p[annotated])
        shown = [s for s in predicted if s.label != UNKNOWN]
        onsets.append(event_based(reference, shown, t_collar=collar_s, evaluate_offset=False))
        events.append(event_based(reference, shown))
        segments.append(segment_based(reference, shown, duration_s=max(end, 1e-3)))
    t, p = np.concatenate(true_frames), np.concatenate(pred_frames)
    onset, event, segment = EventScores.combine(onsets), EventScores.combine(events), SegmentScores.combine(segments)
    per_class = {label: c.f1 for label, c in onset.per_class.items() if c.n_reference or c.n_estimated}
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
            "n_reference": onset.tp + onset.fn,
            "n_predicted": onset.tp + onset.fp,
            "precision": onset.precision,
            "recall": onset.recall,
            "f1": onset.f1,
            "macro_f1": onset.macro_f1,
            "per_class_f1": per_class,
        },
        "dcase": {
            "event_f1": event.f1,
            "event_error_rate": event.error_rate,
            "segment_f1": segment.f1,
            "segment_error_rate": segment.error_rate,
        },
    }
