"""The shape of report.json, as types: what ``compute_report``, ``multilabel_report``, ``abstain_report`` and
``segment_report`` build and what report.md, the figures and the terminal summary read.

A float that can be undefined (an empty bin, no answered recording) is NaN while the report is in memory and
None once written (``jsonable``): such fields are ``float | None``. Key order is the order of report.json.
"""

from __future__ import annotations

from typing import Final, Literal, NotRequired, TypedDict, final

MULTI_LABEL: Final = "multi_label"  # report.json's "task" of a multi-label model


class ReliabilityBin(TypedDict):
    low: float
    high: float
    n: int
    confidence: float | None  # mean top probability of the bin's recordings (undefined for an empty bin)
    accuracy: float | None


class CalibrationScores(TypedDict):
    ece: float
    brier: float
    nll: float
    bins: list[ReliabilityBin]


class ClassScores(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class LevelReport(TypedDict):
    """One level ("recording" or "window") of a single-label report."""

    n: int
    accuracy: float
    accuracy_ci: list[float] | None  # bootstrap percentile interval; None without resamples
    ci_resamples: str  # what the bootstrap resampled: groups, recordings or windows
    balanced_accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]  # rows = true, columns = predicted
    calibration: NotRequired[CalibrationScores]  # recording level only


class ErrorRow(TypedDict):
    recording: str
    true: str
    predicted: str
    confidence: float


class CurvePoint(TypedDict):
    coverage: float
    risk: float
    threshold: float


class RiskCoverage(TypedDict):
    aurc: float | None
    curve: list[CurvePoint]


class ThresholdPoint(TypedDict):
    min_confidence: float
    coverage: float | None  # share answered (not ``unknown``)
    accuracy: float | None  # of the answered ones
    n_unknown: int
    novelty_detector: NotRequired[bool]  # whether novelty also had to be at most 1


class AbstainReport(RiskCoverage):
    n: int
    at_threshold: NotRequired[ThresholdPoint]


class FrameScores(TypedDict):
    seconds: float  # annotated time compared
    frame_s: float
    accuracy: float | None
    macro_f1: float | None


class EventScores(TypedDict):
    onset_collar_s: float
    n_reference: int
    n_predicted: int
    precision: float
    recall: float
    f1: float
    macro_f1: float
    per_class_f1: dict[str, float]


class DcaseScores(TypedDict):
    """The DCASE definitions (sed_eval's): event-based with a 200 ms onset collar and an offset collar of
    200 ms or 20 % of the event, and segment-based over 1 s segments."""

    event_f1: float
    event_error_rate: float | None
    segment_f1: float
    segment_error_rate: float | None


class SegmentScores(TypedDict):
    n_recordings: int
    frame: FrameScores
    event: EventScores
    dcase: DcaseScores


class SegmentReport(SegmentScores):
    window_s: float  # the windows the model's segments were made from
    hop_s: float


@final  # no other keys: "task" in a report tells the two kinds apart
class ClassificationReport(TypedDict):
    """report.json of a single-label model."""

    labels: list[str]
    n_groups: int
    n_recordings_total: int
    n_recordings_excluded: int
    ci: float
    n_bootstrap: int
    seed: int
    recording: LevelReport
    window: LevelReport
    n_errors: int
    errors: list[ErrorRow]  # the most confident misclassified recordings
    views: NotRequired[dict[str, LevelReport]]  # a fused model: each view alone, recording level
    abstain: NotRequired[AbstainReport]
    segments: NotRequired[SegmentReport]


class LabelScores(TypedDict):
    average_precision: float | None  # None: the label has no positive recording
    f1: float
    precision: float
    recall: float
    threshold: float
    support: int


@final
class MultiLabelReport(TypedDict):
    """report.json of a multi-label model."""

    task: Literal["multi_label"]
    labels: list[str]
    n_recordings: int
    map: float | None
    micro_f1: float
    macro_f1: float
    exact_match: float | None
    per_label: dict[str, LabelScores]
    segments: NotRequired[SegmentReport]  # never set today: a multi-label model is not scored as segments


Report = ClassificationReport | MultiLabelReport  # ``"task" in report``: a multi-label one
