"""Sound-event detection metrics (sed_eval's event-based and segment-based definitions) against hand-worked
examples: each expected number is counted by hand in the comments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from audioclf.evaluation.event_metrics import (
    ClassCounts,
    EventScores,
    SegmentScores,
    event_based,
    false_alarms_per_hour,
    segment_based,
)
from audioclf.evaluation.segments import Segment


@dataclass(frozen=True)
class Ev:
    start_s: float
    end_s: float
    label: str


def shifted(events: list[Ev], by_s: float) -> list[Ev]:
    return [Ev(e.start_s + by_s, e.end_s + by_s, e.label) for e in events]


ONSET_ONLY: dict[str, Any] = {"evaluate_offset": False, "t_collar": 0.5}  # this project's usual setting


def test_exact_match_is_perfect() -> None:
    ref = [Segment(1.0, 2.0, "dog", 0.9, 0.9), Segment(3.0, 4.0, "cat", 0.8, 0.9)]  # Segment fits TimedLabel
    s = event_based(ref, list(ref))
    # both estimates land exactly on their references: 2 tp, nothing else
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (2, 0, 0, 0, 0, 0)
    assert (s.precision, s.recall, s.f1, s.macro_f1, s.error_rate) == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert s.per_class == {"cat": ClassCounts(1, 0, 0), "dog": ClassCounts(1, 0, 0)}


def test_onset_collar_boundary_counts() -> None:
    ref = [Ev(5.0, 6.0, "dog")]
    # onset 0.2 s late, exactly the collar (5.2 - 5.0 is 0.2000000000000002 in floats: still a hit); offset equal
    s = event_based(ref, [Ev(5.2, 6.0, "dog")])
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)
    # 0.25 s late: outside the collar -> the reference is missed (fn 1) and the estimate is spurious (fp 1); not
    # a substitution either (it fails the collar whatever its label): D = 1, I = 1, ER = (0 + 1 + 1) / 1 = 2
    s = event_based(ref, [Ev(5.25, 6.0, "dog")])
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (0, 1, 1, 0, 1, 1)
    assert (s.precision, s.recall, s.f1, s.error_rate) == (0.0, 0.0, 0.0, 2.0)
    # onset only with a 0.5 s collar: 0.5 s early is a hit whatever the offset; 0.51 s early is not
    assert event_based([Ev(1.0, 2.0, "dog")], [Ev(0.5, 4.0, "dog")], **ONSET_ONLY).tp == 1
    assert event_based([Ev(1.0, 2.0, "dog")], [Ev(0.49, 2.0, "dog")], **ONSET_ONLY).tp == 0
    # the same 0.5 s early estimate fails the DCASE default (onset 0.5 > 0.2)
    assert event_based([Ev(1.0, 2.0, "dog")], [Ev(0.5, 2.0, "dog")]).tp == 0


def test_offset_collar_grows_with_the_reference_length() -> None:
    long = [Ev(0.0, 10.0, "dog")]  # 20 % of 10 s = 2 s > 0.2 s: the offset may be 2 s off
    assert event_based(long, [Ev(0.1, 8.1, "dog")]).tp == 1  # offset 1.9 s early <= 2.0
    assert event_based(long, [Ev(0.1, 12.0, "dog")]).tp == 1  # offset 2.0 s late, exactly the allowance
    assert event_based(long, [Ev(0.1, 7.9, "dog")]).tp == 0  # 2.1 s early > 2.0
    assert event_based(long, [Ev(0.1, 7.9, "dog")], evaluate_offset=False).tp == 1  # offset ignored
    short = [Ev(0.0, 0.5, "dog")]  # 20 % of 0.5 s = 0.1 s < 0.2 s: the 0.2 s collar applies
    assert event_based(short, [Ev(0.0, 0.7, "dog")]).tp == 1  # 0.2 s late
    assert event_based(short, [Ev(0.0, 0.75, "dog")]).tp == 0  # 0.25 s late
    assert event_based(short, [Ev(0.0, 0.75, "dog")], percentage_of_length=0.5).tp == 1  # 50 % = 0.25 s


def test_wrong_label_is_a_substitution() -> None:
    ref = [Ev(1.0, 2.0, "dog"), Ev(5.0, 6.0, "bird")]
    est = [Ev(1.1, 2.0, "cat"), Ev(5.0, 6.0, "bird"), Ev(8.0, 9.0, "bird")]
    s = event_based(ref, est)
    # bird 5-6 matches (tp 1); cat 1.1-2 and bird 8-9 are unmatched (fp 2); dog 1-2 is unmatched (fn 1).
    # Ignoring labels, dog 1-2 and cat 1.1-2 fit the collars: 1 substitution; D = fn - S = 0, I = fp - S = 1.
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (1, 2, 1, 1, 0, 1)
    assert s.error_rate == 1.0  # (1 + 0 + 1) / 2 references
    assert s.precision == pytest.approx(1 / 3)  # 1 tp of 3 estimates
    assert s.recall == 0.5  # 1 tp of 2 references
    assert s.f1 == pytest.approx(0.4)  # 2 * 1 / (2 + 3)
    # bird: tp 1, fp 1 -> F1 2/3; cat: fp 1 -> 0; dog: fn 1 -> 0; macro (2/3 + 0 + 0) / 3 = 2/9
    assert s.per_class == {"bird": ClassCounts(1, 1, 0), "cat": ClassCounts(0, 1, 0), "dog": ClassCounts(0, 0, 1)}
    assert s.macro_f1 == pytest.approx(2 / 9)
    assert s.per_class["dog"].error_rate == 1.0  # class-wise ER: (fn + fp) / n_ref = (1 + 0) / 1
    assert s.per_class["cat"].error_rate is None  # no cat reference, one cat insertion: undefined


def test_two_estimates_for_one_reference() -> None:
    s = event_based([Ev(1.0, 2.0, "dog")], [Ev(1.0, 2.0, "dog"), Ev(1.1, 2.0, "dog")])
    # one to one: one estimate takes the reference (tp 1), the other is left (fp 1); no reference left, so no
    # substitution: I = 1, ER = 1 / 1; precision 1/2, recall 1, F1 2 * 1 / (1 + 2) = 2/3
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (1, 1, 0, 0, 0, 1)
    assert (s.precision, s.recall, s.error_rate) == (0.5, 1.0, 1.0)
    assert s.f1 == pytest.approx(2 / 3)


def test_maximum_matching_beats_greedy() -> None:
    # onset only, 0.5 s collar. r0 (1.0) fits e_near (1.05, 0.05 away) and e_far (0.55, 0.45 away); r1 (1.45)
    # fits only e_near (0.40 away; e_far is 0.90 away). Greedy nearest-first pairs r0-e_near (the closest pair)
    # and leaves r1 with nothing: 1 tp. Greedy in reference order (old sed_eval) pairs r0 with the first fitting
    # estimate, e_near, too: 1 tp. The maximum matching pairs r0-e_far and r1-e_near: 2 tp.
    ref = [Ev(1.0, 2.0, "dog"), Ev(1.45, 2.0, "dog")]
    est = [Ev(1.05, 2.0, "dog"), Ev(0.55, 2.0, "dog")]
    s = event_based(ref, est, **ONSET_ONLY)
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    assert s.f1 == 1.0


def test_macro_f1_with_a_class_only_in_the_estimate() -> None:
    ref = [Ev(0.0, 1.0, "dog"), Ev(2.0, 3.0, "dog")]
    est = [Ev(0.0, 1.0, "dog"), Ev(5.0, 6.0, "cat")]
    s = event_based(ref, est)
    # dog 0-1 matches (tp 1); dog 2-3 missed (fn 1); cat 5-6 spurious (fp 1); dog 2-3 and cat 5-6 are 3 s apart:
    # no substitution, D = 1, I = 1, ER = 2 / 2 = 1. Micro P = R = F1 = 1/2.
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (1, 1, 1, 0, 1, 1)
    assert (s.precision, s.recall, s.f1, s.error_rate) == (0.5, 0.5, 0.5, 1.0)
    # dog: tp 1, fn 1 -> F1 2/3; cat (estimate only): F1 0, still averaged in: macro (2/3 + 0) / 2 = 1/3
    assert s.per_class["dog"].f1 == pytest.approx(2 / 3)
    assert s.per_class["cat"].f1 == 0.0
    assert s.macro_f1 == pytest.approx(1 / 3)


def test_no_reference_and_zero_division() -> None:
    empty = event_based([], [])
    assert (empty.precision, empty.recall, empty.f1, empty.macro_f1, empty.error_rate) == (0.0, 0.0, 0.0, 0.0, 0.0)
    only_estimates = event_based([], [Ev(1.0, 2.0, "dog")])
    assert (only_estimates.fp, only_estimates.insertions, only_estimates.error_rate) == (1, 1, None)
    out = only_estimates.to_dict()
    assert out["error_rate"] is None and out["per_class"] == {
        "dog": {"tp": 0, "fp": 1, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "error_rate": None}
    }
    json.dumps(out, allow_nan=False)  # JSON-safe
    with pytest.raises(ValueError):
        event_based([], [], t_collar=-0.1)


SEG_REF = [Ev(0.2, 1.5, "dog"), Ev(2.5, 3.2, "cat"), Ev(0.0, 0.1, "bird")]
SEG_EST = [
    Ev(0.5, 0.9, "dog"),
    Ev(3.0, 3.5, "dog"),
    Ev(1.0, 2.0, "cat"),  # touches segments 0 and 2 only at their edges: active in segment 1 alone
    Ev(3.1, 3.5, "cat"),
    Ev(2.2, 2.4, "bird"),
    Ev(10.0, 11.0, "owl"),  # after the 3.5 s: counted nowhere
]


def test_segment_based_on_a_partial_last_segment() -> None:
    s = segment_based(SEG_REF, SEG_EST, duration_s=3.5, resolution_s=1.0)
    # segments [0,1) [1,2) [2,3) [3,3.5]
    #   0: ref {dog, bird}  est {dog}       tp 1 fp 0 fn 1 -> S 0 D 1 I 0
    #   1: ref {dog}        est {cat}       tp 0 fp 1 fn 1 -> S 1
    #   2: ref {cat}        est {bird}      tp 0 fp 1 fn 1 -> S 1
    #   3: ref {cat}        est {cat, dog}  tp 1 fp 1 fn 0 -> I 1
    assert s.n_segments == 4
    assert (s.tp, s.fp, s.fn, s.substitutions, s.deletions, s.insertions) == (2, 3, 3, 2, 1, 1)
    assert s.error_rate == pytest.approx(0.8)  # (2 + 1 + 1) / 5 active reference (segment, class) pairs
    assert (s.precision, s.recall, s.f1) == pytest.approx((0.4, 0.4, 0.4))  # 2 / 5 each
    # dog: ref {0,1} est {0,3}; cat: ref {2,3} est {1,3}; bird: ref {0} est {2}; owl: nothing
    assert s.per_class == {
        "bird": ClassCounts(0, 1, 1),
        "cat": ClassCounts(1, 1, 1),
        "dog": ClassCounts(1, 1, 1),
        "owl": ClassCounts(0, 0, 0),
    }
    assert s.macro_f1 == pytest.approx(1 / 3)  # (0 + 1/2 + 1/2) / 3: owl, counted nowhere, is left out
    assert s.to_dict()["n_segments"] == 4
    json.dumps(s.to_dict(), allow_nan=False)
    # with 3.0 s the last segment is gone: only segments 0-2 count
    assert segment_based(SEG_REF, SEG_EST, duration_s=3.0).tp == 1
    with pytest.raises(ValueError):
        segment_based(SEG_REF, SEG_EST, duration_s=0.0)


def test_false_alarms_per_hour() -> None:
    assert false_alarms_per_hour([Ev(1, 2, "dog"), Ev(5, 6, "cat"), Ev(9, 9.5, "dog")], 1800.0) == 6.0  # 3 in 1/2 h
    assert false_alarms_per_hour([], 60.0) == 0.0
    with pytest.raises(ValueError):
        false_alarms_per_hour([], 0.0)


def test_combine_equals_the_concatenation() -> None:
    ref_a, est_a = [Ev(1.0, 2.0, "dog"), Ev(5.0, 6.0, "bird")], [Ev(1.1, 2.0, "cat"), Ev(5.0, 6.0, "bird")]
    ref_b, est_b = [Ev(0.5, 1.5, "dog"), Ev(3.0, 4.0, "cat")], [Ev(0.5, 1.6, "dog"), Ev(9.0, 9.5, "dog")]
    whole = event_based([*ref_a, *shifted(ref_b, 100.0)], [*est_a, *shifted(est_b, 100.0)])
    both = EventScores.combine([event_based(ref_a, est_a), event_based(ref_b, est_b)])
    assert both == whole
    # a: tp 1 (bird), S 1 (dog as cat); b: tp 1 (dog), cat 3-4 missed, dog 9-9.5 spurious, 6 s apart: D 1, I 1
    assert (both.tp, both.fp, both.fn, both.substitutions, both.deletions, both.insertions) == (2, 2, 2, 1, 1, 1)
    assert both.error_rate == 0.75  # 3 errors / 4 references
    assert both.per_class["dog"] == ClassCounts(1, 1, 1)
    with pytest.raises(ValueError):
        EventScores.combine([event_based(ref_a, est_a), event_based(ref_b, est_b, t_collar=0.5)])
    with pytest.raises(ValueError):
        EventScores.combine([])

    est_a = [e for e in SEG_EST if e.label != "owl"]  # owl (10-11 s) would land in recording b's time
    # a lasts 4 s (whole segments, so b's segments line up in the concatenation) and no event of a crosses 4 s
    seg_a, seg_b = segment_based(SEG_REF, est_a, duration_s=4.0), segment_based(ref_b, est_b, duration_s=10.0)
    seg_whole = segment_based([*SEG_REF, *shifted(ref_b, 4.0)], [*est_a, *shifted(est_b, 4.0)], duration_s=14.0)
    seg_both = SegmentScores.combine([seg_a, seg_b])
    assert seg_both == seg_whole
    # a: the counts of the partial-segment example (segment 3 is now [3, 4), same activity): tp 2, fp 3, fn 3,
    # S 2, D 1, I 1. b: dog 0.5-1.5 vs 0.5-1.6 -> segments 0 and 1, tp 2; cat 3-4 missed in segment 3 (fn, D);
    # dog 9-9.5 in segment 9 (fp, I). Sum: tp 4, fp 4, fn 4, S 2, D 2, I 2, ER 6 / 8 reference pairs
    assert (seg_both.tp, seg_both.fp, seg_both.fn) == (4, 4, 4)
    assert (seg_both.substitutions, seg_both.deletions, seg_both.insertions) == (2, 2, 2)
    assert seg_both.error_rate == 0.75
    assert (seg_both.n_segments, seg_both.duration_s) == (14, 14.0)
    with pytest.raises(ValueError):
        SegmentScores.combine([seg_a, segment_based(ref_b, est_b, duration_s=10.0, resolution_s=0.5)])
