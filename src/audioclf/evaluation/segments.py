"""Window probabilities of one recording -> labelled time segments: a frame grid at the hop, smoothing over
neighbouring frames, one label per frame, runs merged, blips shorter than a minimum absorbed by a neighbour."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audioclf.errors import AudioclfError

SMOOTHERS = ("median", "mean", "none")
DEFAULT_SMOOTH = "median:3"
UNKNOWN = "unknown"  # the label of an answer below the confidence threshold
BACKGROUND = "background"  # a class that means "none of the others": its segments are not events


class Segmenter(enum.StrEnum):
    """How a recording is cut into segments: ``windows`` labels every frame from the sliding windows that cover
    it (continuous audio, a model trained on windows like these); ``events`` finds where something happens
    (the recording's own activity) and classifies each region as the model's training clips were (a model
    trained on short isolated clips, run over long recordings with gaps); ``auto`` takes the model's choice."""

    AUTO = "auto"
    WINDOWS = "windows"
    EVENTS = "events"


@dataclass(frozen=True)
class SegmentOptions:
    """``smooth`` filters each class's probability over ``smooth_frames`` neighbouring frames (one frame per
    hop) before the per-frame label is taken; segments shorter than ``min_duration_s`` join a neighbour."""

    smooth: str = "median"
    smooth_frames: int = 3
    min_duration_s: float = 0.0
    segmenter: Segmenter = Segmenter.AUTO

    def __post_init__(self) -> None:
        if self.smooth not in SMOOTHERS:
            raise AudioclfError(f"smoothing {self.smooth!r}: use one of {', '.join(SMOOTHERS)}", option="smooth")
        if self.smooth_frames < 1:
            raise AudioclfError("smoothing needs at least 1 frame", option="smooth")
        if not self.min_duration_s >= 0:
            raise AudioclfError("the minimum segment duration must be 0 or more seconds", option="min_duration")

    @classmethod
    def parse(
        cls, smooth: str = DEFAULT_SMOOTH, min_duration_s: float = 0.0, segmenter: str = "auto"
    ) -> SegmentOptions:
        """``median:3``, ``mean:5``, ``median`` (3 frames) or ``none``; ``auto``, ``windows`` or ``events``."""
        try:
            chosen = Segmenter(segmenter.strip().lower())
        except ValueError:
            raise AudioclfError(f"segmenter {segmenter!r}: use auto, windows or events", option="segmenter") from None
        kind, _, count = smooth.strip().lower().partition(":")
        try:
            frames = int(count) if count else (1 if kind == "none" else 3)
        except ValueError:
            raise AudioclfError(
                f"smoothing {smooth!r}: use KIND[:FRAMES] such as median:3, mean:5 or none", option="smooth"
            ) from None
        return cls(kind, frames, min_duration_s, chosen)


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    label: str
    mean_probability: float  # of ``label`` over the segment's frames, before smoothing
    max_probability: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def as_dict(self) -> dict[str, object]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "label": self.label,
            "confidence": self.mean_probability,
            "max_probability": self.max_probability,
        }


def frame_grid(
    starts_s: np.ndarray, durations_s: np.ndarray, probs: np.ndarray, step_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of ``step_s`` from the first window's start to the last window's end: (starts, ends, probs), a
    frame's probabilities the mean over the windows that cover its middle (overlapping windows share frames)."""
    begin = float(starts_s.min())
    end = float((starts_s + durations_s).max())
    n = max(1, int(np.ceil((end - begin) / step_s - 1e-6)))
    f_start = begin + step_s * np.arange(n)
    f_end = np.minimum(f_start + step_s, end)
    middle = (f_start + f_end) / 2
    covers = (starts_s[None, :] <= middle[:, None]) & (middle[:, None] < (starts_s + durations_s)[None, :])
    nearest = np.abs(starts_s[None, :] + durations_s[None, :] / 2 - middle[:, None]).argmin(axis=1)
    covers[np.arange(n), nearest] |= ~covers.any(axis=1)  # a frame in no window (a gap) takes the nearest one
    weights = covers / covers.sum(axis=1, keepdims=True)
    return f_start, f_end, weights @ probs


def smoothed(probs: np.ndarray, options: SegmentOptions) -> np.ndarray:
    """Each class's probability filtered over time (frames on axis 0)."""
    if options.smooth == "none" or options.smooth_frames == 1 or len(probs) < 2:
        return probs
    from scipy.ndimage import median_filter, uniform_filter1d

    if options.smooth == "median":
        return median_filter(probs, size=(options.smooth_frames, 1), mode="nearest")
    return uniform_filter1d(probs, options.smooth_frames, axis=0, mode="nearest")


def segments_of(
    starts_s: np.ndarray,
    durations_s: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    step_s: float,
    options: SegmentOptions = SegmentOptions(),
    min_confidence: float | None = None,
    novelty: np.ndarray | None = None,
) -> list[Segment]:
    """Labelled segments of one recording from its windows' class probabilities (windows x classes). With
    ``min_confidence``, frames whose smoothed top probability is below it, or whose smoothed ``novelty`` (per
    window, above 1: unlike the training audio) is above 1, are labelled ``unknown``."""
    n = len(labels)
    values = probs if novelty is None else np.column_stack([probs, novelty])
    f_start, f_end, frame_values = frame_grid(np.asarray(starts_s), np.asarray(durations_s), values, step_s)
    frame_probs, decided = frame_values[:, :n], smoothed(frame_values, options)
    codes = decided[:, :n].argmax(axis=1)
    if min_confidence is not None:
        sure = decided[:, :n].max(axis=1) >= min_confidence
        if novelty is not None:
            sure &= decided[:, n] <= 1.0
        codes = np.where(sure, codes, n)
    codes = _absorb_short_runs(codes, f_end - f_start, options.min_duration_s)
    names = [*labels, UNKNOWN]
    out = []
    for first, last in _runs(codes):
        code = int(codes[first])
        p = frame_probs[first : last + 1].max(axis=1) if code == len(labels) else frame_probs[first : last + 1, code]
        out.append(Segment(float(f_start[first]), float(f_end[last]), names[code], float(p.mean()), float(p.max())))
    return out


def _runs(codes: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame index of each run of one code."""
    edges = np.flatnonzero(np.diff(codes)) + 1
    firsts = np.concatenate([[0], edges])
    lasts = np.concatenate([edges - 1, [len(codes) - 1]])
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def _absorb_short_runs(codes: np.ndarray, frame_s: np.ndarray, min_duration_s: float) -> np.ndarray:
    """The shortest run below ``min_duration_s`` takes the code of its longer neighbour, again and again, until
    every run is long enough or one run is left."""
    codes = codes.copy()
    while min_duration_s > 0:
        runs = _runs(codes)
        lengths = [float(frame_s[a : b + 1].sum()) for a, b in runs]
        i = int(np.argmin(lengths))
        if len(runs) == 1 or lengths[i] >= min_duration_s - 1e-9:
            break
        before = lengths[i - 1] if i > 0 else -1.0
        after = lengths[i + 1] if i + 1 < len(runs) else -1.0
        donor = runs[i - 1] if before >= after else runs[i + 1]
        first, last = runs[i]
        codes[first : last + 1] = codes[donor[0]]
    return codes


def label_segments(
    starts_s: np.ndarray,
    durations_s: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    step_s: float,
    thresholds: np.ndarray,
    options: SegmentOptions = SegmentOptions(),
) -> list[Segment]:
    """Multi-label segments: for each label on its own, the runs of frames whose smoothed probability reaches
    the label's threshold (segments of different labels may overlap), sorted by start."""
    f_start, f_end, frame_probs = frame_grid(np.asarray(starts_s), np.asarray(durations_s), probs, step_s)
    on = smoothed(frame_probs, options) >= thresholds[None, :]
    out = []
    for k, label in enumerate(labels):
        codes = _absorb_short_runs(on[:, k].astype(np.int64), f_end - f_start, options.min_duration_s)
        for first, last in _runs(codes):
            if codes[first]:
                p = frame_probs[first : last + 1, k]
                out.append(Segment(float(f_start[first]), float(f_end[last]), label, float(p.mean()), float(p.max())))
    return sorted(out, key=lambda seg: (seg.start_s, seg.label))
