"""Sound-event detection metrics as DCASE defines them (sed_eval's event-based and segment-based metrics),
numpy only, plus false alarms per hour of background-only audio.

Conventions: precision, recall and F1 are 0.0 where their denominator is 0. The error rate is undefined
without reference events: it is 0.0 when nothing was estimated either and None (JSON null) otherwise. The
class-wise macro F1 averages the classes present in the reference or the estimate (a class counted nowhere is
left out). ``combine`` sums the counts of several recordings (micro) and recomputes the rates from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
from scipy.optimize import linear_sum_assignment

_TOL = 1e-9  # a difference of exactly a collar counts, whatever the float rounding of the subtraction


class TimedLabel(Protocol):
    """An event: ``Segment`` and any object with these read-only attributes."""

    @property
    def start_s(self) -> float: ...
    @property
    def end_s(self) -> float: ...
    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class ClassCounts:
    """True positives, false positives, false negatives (events or active segments)."""

    tp: int
    fp: int
    fn: int

    @property
    def n_reference(self) -> int:
        return self.tp + self.fn

    @property
    def n_estimated(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        return self.tp / self.n_estimated if self.n_estimated else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_reference if self.n_reference else 0.0

    @property
    def f1(self) -> float:
        total = self.n_reference + self.n_estimated
        return 2 * self.tp / total if total else 0.0

    @property
    def error_rate(self) -> float | None:
        """Deletions and insertions over reference count (sed_eval's class-wise ER: no substitutions)."""
        return _error_rate(self.fn + self.fp, self.n_reference)

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in ("tp", "fp", "fn", "precision", "recall", "f1", "error_rate")}


@dataclass(frozen=True)
class _Scores(ClassCounts):
    """Micro counts, substitutions/deletions/insertions and the counts of each class."""

    substitutions: int
    deletions: int
    insertions: int
    per_class: Mapping[str, ClassCounts]

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes present in the reference or the estimate; 0.0 without any."""
        present = [c.f1 for c in self.per_class.values() if c.n_reference or c.n_estimated]
        return float(np.mean(present)) if present else 0.0

    @property
    def error_rate(self) -> float | None:
        """(S + D + I) / N_ref; 0.0 with no reference and no error, None with no reference but insertions."""
        return _error_rate(self.substitutions + self.deletions + self.insertions, self.n_reference)

    def _counts_dict(self) -> dict[str, object]:
        names = ("n_reference", "n_estimated", "substitutions", "deletions", "insertions", "macro_f1")
        per_class = {label: c.to_dict() for label, c in sorted(self.per_class.items())}
        return super().to_dict() | {name: getattr(self, name) for name in names} | {"per_class": per_class}


def _error_rate(errors: int, n_reference: int) -> float | None:
    if n_reference:
        return errors / n_reference
    return 0.0 if errors == 0 else None


def _summed(scores: Sequence[_Scores]) -> tuple[int, int, int, int, int, int, dict[str, ClassCounts]]:
    """The micro counts (tp, fp, fn, substitutions, deletions, insertions) and per-class counts added up."""
    per_class: dict[str, ClassCounts] = {}
    for s in scores:
        for label, c in s.per_class.items():
            old = per_class.get(label, ClassCounts(0, 0, 0))
            per_class[label] = ClassCounts(old.tp + c.tp, old.fp + c.fp, old.fn + c.fn)

    def total(name: str) -> int:
        return sum(getattr(s, name) for s in scores)

    counts = total("tp"), total("fp"), total("fn"), total("substitutions"), total("deletions"), total("insertions")
    return (*counts, dict(sorted(per_class.items())))


def _one_setting(scores: Sequence[_Scores], *names: str) -> None:
    if not scores:
        raise ValueError("combine needs at least one recording's scores")
    for name in names:
        if len({getattr(s, name) for s in scores}) > 1:
            raise ValueError(f"cannot combine scores computed with different {name}")


_EVENT_SETTINGS = ("t_collar", "percentage_of_length", "evaluate_onset", "evaluate_offset")


@dataclass(frozen=True)
class EventScores(_Scores):
    """sed_eval's event-based scores. ``fp`` counts every unmatched estimate and ``fn`` every unmatched
    reference, substitutions included (so precision = tp / n_estimated); ``deletions = fn - substitutions`` and
    ``insertions = fp - substitutions``."""

    t_collar: float
    percentage_of_length: float
    evaluate_onset: bool
    evaluate_offset: bool

    @classmethod
    def combine(cls, scores: Sequence[EventScores]) -> Self:
        """Several recordings' scores as one: counts added, rates recomputed; the settings must agree."""
        _one_setting(scores, *_EVENT_SETTINGS)
        first = scores[0]
        settings = first.t_collar, first.percentage_of_length, first.evaluate_onset, first.evaluate_offset
        return cls(*_summed(scores), *settings)

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _EVENT_SETTINGS} | self._counts_dict()


@dataclass(frozen=True)
class SegmentScores(_Scores):
    """sed_eval's segment-based scores: counts of (segment, class) pairs over ``n_segments`` segments of
    ``resolution_s`` covering ``duration_s`` seconds."""

    resolution_s: float
    n_segments: int
    duration_s: float

    @classmethod
    def combine(cls, scores: Sequence[SegmentScores]) -> Self:
        """Several recordings' scores as one: counts, segments and durations added; same resolution only."""
        _one_setting(scores, "resolution_s")
        n_segments, duration_s = sum(s.n_segments for s in scores), sum(s.duration_s for s in scores)
        return cls(*_summed(scores), scores[0].resolution_s, n_segments, duration_s)

    def to_dict(self) -> dict[str, object]:
        return {
            "resolution_s": self.resolution_s,
            "n_segments": self.n_segments,
            "duration_s": self.duration_s,
            **self._counts_dict(),
        }


def _times(events: Sequence[TimedLabel]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.array([e.start_s for e in events], dtype=np.float64)
    ends = np.array([e.end_s for e in events], dtype=np.float64)
    return starts, ends, np.array([e.label for e in events], dtype=object)


def _max_matching(hits: np.ndarray) -> list[tuple[int, int]]:
    """A largest set of one-to-one (row, column) pairs among the True cells of ``hits``."""
    if not hits.any():
        return []
    rows, cols = linear_sum_assignment(hits.astype(np.float64), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if hits[r, c]]


def event_based(
    reference: Sequence[TimedLabel],
    estimated: Sequence[TimedLabel],
    *,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
) -> EventScores:
    """An estimate matches a reference of its label when their onsets differ by at most ``t_collar`` and (with
    ``evaluate_offset``) their offsets by at most max(``t_collar``, ``percentage_of_length`` x the reference's
    duration). Pairs are one to one, as many as possible (a maximum bipartite matching). The references and
    estimates left over are then paired the same way ignoring labels: those pairs are the substitutions (sed_eval
    pairs these greedily; a maximum matching here too, so S can only be larger)."""
    if t_collar < 0 or percentage_of_length < 0:
        raise ValueError("the collars must be 0 or more")
    ref_on, ref_off, ref_labels = _times(reference)
    est_on, est_off, est_labels = _times(estimated)
    hits = np.ones((len(reference), len(estimated)), dtype=bool)
    if evaluate_onset:
        hits &= np.abs(ref_on[:, None] - est_on[None, :]) <= t_collar + _TOL
    if evaluate_offset:
        allowed = np.maximum(t_collar, percentage_of_length * (ref_off - ref_on))
        hits &= np.abs(ref_off[:, None] - est_off[None, :]) <= allowed[:, None] + _TOL
    matched = _max_matching(hits & (ref_labels[:, None] == est_labels[None, :]))
    ref_left = np.setdiff1d(np.arange(len(reference)), [i for i, _ in matched])
    est_left = np.setdiff1d(np.arange(len(estimated)), [j for _, j in matched])
    substitutions = len(_max_matching(hits[np.ix_(ref_left, est_left)]))
    per_class: dict[str, ClassCounts] = {}
    for label in sorted({*ref_labels.tolist(), *est_labels.tolist()}):
        tp = sum(int(ref_labels[i] == label) for i, _ in matched)
        per_class[label] = ClassCounts(tp, int((est_labels == label).sum()) - tp, int((ref_labels == label).sum()) - tp)
    fp, fn = len(estimated) - len(matched), len(reference) - len(matched)
    return EventScores(
        len(matched), fp, fn, substitutions, fn - substitutions, fp - substitutions, per_class,
        t_collar, percentage_of_length, evaluate_onset, evaluate_offset,
    )  # fmt: skip


def segment_based(
    reference: Sequence[TimedLabel], estimated: Sequence[TimedLabel], *, duration_s: float, resolution_s: float = 1.0
) -> SegmentScores:
    """Time cut into segments of ``resolution_s`` from 0 to ``duration_s`` (the last one may be shorter; events
    after ``duration_s`` are not counted). A class is active in a segment when one of its events overlaps it
    (start < segment end and end > segment start). Per segment: S = min(fn, fp), D = max(0, fn - fp),
    I = max(0, fp - fn); the counts are summed over segments and the ER is (S + D + I) / N_ref."""
    if not duration_s > 0 or not resolution_s > 0:
        raise ValueError("the duration and the resolution must be more than 0 seconds")
    n = max(1, math.ceil(duration_s / resolution_s - _TOL))
    seg_start = resolution_s * np.arange(n)
    seg_end = np.minimum(seg_start + resolution_s, duration_s)
    labels = sorted({e.label for e in [*reference, *estimated]})
    index = {label: k for k, label in enumerate(labels)}

    def activity(events: Sequence[TimedLabel]) -> np.ndarray:
        active = np.zeros((n, len(labels)), dtype=bool)
        for e in events:
            active[:, index[e.label]] |= (e.start_s < seg_end) & (e.end_s > seg_start)
        return active

    ref, est = activity(reference), activity(estimated)
    tp, fp, fn = ref & est, est & ~ref, ref & ~est
    fp_seg, fn_seg = fp.sum(axis=1), fn.sum(axis=1)
    per_class = {
        label: ClassCounts(int(tp[:, k].sum()), int(fp[:, k].sum()), int(fn[:, k].sum())) for label, k in index.items()
    }
    return SegmentScores(
        int(tp.sum()), int(fp.sum()), int(fn.sum()),
        int(np.minimum(fn_seg, fp_seg).sum()),
        int(np.maximum(0, fn_seg - fp_seg).sum()),
        int(np.maximum(0, fp_seg - fn_seg).sum()),
        per_class, resolution_s, n, float(duration_s),
    )  # fmt: skip


def false_alarms_per_hour(estimated: Sequence[TimedLabel], duration_s: float) -> float:
    """Estimated events per hour of audio: on background-only audio every one is a false alarm."""
    if not duration_s > 0:
        raise ValueError("the duration must be more than 0 seconds")
    return len(estimated) * 3600.0 / duration_s
