"""Where something happens in a recording: an activity gate on the recording's own level, measured against
its own background (no model, no training data), at 10 ms resolution.

Each 20 ms frame's level (dB) is compared with the recording's floor (a low percentile of its frame levels,
kept within ``FLOOR_RANGE_DB`` of its loud frames, so digital silence does not set it). A region starts where
the level rises above the high threshold and ends where it falls below the low one (hysteresis), closer regions
are joined, shorter ones dropped (and each may be padded). The thresholds scale with the recording's own
range (floor to loud): a quiet room and a noisy street get thresholds that fit each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioclf.errors import AudioclfError

FRAME_S = 0.02
HOP_S = 0.01
FLOOR_PERCENTILE = 10.0
LOUD_PERCENTILE = 99.0
FLOOR_RANGE_DB = 60.0  # the floor is never more than this below the loud frames
EPS = 1e-10
QUIET_DB = -50.0  # a steady recording below this level (room tone, a quiet hiss) holds nothing


@dataclass(frozen=True)
class ActivityOptions:
    """``high``/``low``: the hysteresis thresholds as fractions of the recording's range above its floor (and
    at least ``min_rise_db`` / half of it above the floor); ``min_gap_s``: closer regions are one;
    ``min_event_s``: shorter regions are dropped; ``pad_s``: added on both sides."""

    high: float = 0.3
    low: float = 0.15
    min_rise_db: float = 6.0
    min_gap_s: float = 0.3
    min_event_s: float = 0.1
    pad_s: float = 0.0  # measured: padding regions made classifying them worse (12 vs 13 of 15 digits)

    def __post_init__(self) -> None:
        if not 0.0 < self.low <= self.high < 1.0:
            raise AudioclfError("activity thresholds: use 0 < low <= high < 1 (fractions of the level range)")
        if min(self.min_rise_db, self.min_gap_s, self.min_event_s, self.pad_s) < 0:
            raise AudioclfError("activity: durations and the minimum rise are 0 or more")


@dataclass(frozen=True)
class Region:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def frame_levels_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """The level of each ``FRAME_S`` frame, every ``HOP_S`` (dB re full scale)."""
    frame, hop = round(FRAME_S * rate), round(HOP_S * rate)
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n = 1 + (len(x) - frame) // hop
    power = np.lib.stride_tricks.sliding_window_view(x**2, frame)[::hop][:n].mean(axis=1)
    return np.asarray(10.0 * np.log10(power + EPS))


def active_regions(samples: np.ndarray, rate: int, options: ActivityOptions = ActivityOptions()) -> list[Region]:
    """The regions of ``samples`` where the level stands out from the recording's own floor."""
    return regions_of_levels(frame_levels_db(samples, rate), len(samples) / rate, options)


def regions_of_levels(db: np.ndarray, duration: float, options: ActivityOptions = ActivityOptions()) -> list[Region]:
    """The regions of a stretch of ``duration`` seconds with frame levels ``db`` (``frame_levels_db``) where
    the level stands out from that stretch's own floor (times from the stretch's start)."""
    loud = float(np.percentile(db, LOUD_PERCENTILE))
    floor = max(float(np.percentile(db, FLOOR_PERCENTILE)), loud - FLOOR_RANGE_DB)
    span = loud - floor
    if span < options.min_rise_db:  # nothing stands out: silence, or one steady sound throughout
        return [Region(0.0, duration)] if loud > QUIET_DB else []
    high = floor + max(options.high * span, options.min_rise_db)
    low = floor + max(options.low * span, options.min_rise_db / 2)
    return _tidy(_hysteresis(db, high, low), duration, options)


def _hysteresis(db: np.ndarray, high: float, low: float) -> list[Region]:
    """Runs that reach ``high`` and extend while the level stays above ``low`` (frame centres, in seconds)."""
    above_low = db >= low
    regions = []
    k = 0
    while k < len(db):
        if db[k] < high:
            k += 1
            continue
        first = k
        while first > 0 and above_low[first - 1]:
            first -= 1
        last = k
        while last + 1 < len(db) and above_low[last + 1]:
            last += 1
        regions.append(Region(first * HOP_S, last * HOP_S + FRAME_S))
        k = last + 1
    return regions


def _tidy(regions: list[Region], duration_s: float, options: ActivityOptions) -> list[Region]:
    """Join regions closer than ``min_gap_s``, drop those shorter than ``min_event_s``, pad, clip to the audio."""
    joined: list[Region] = []
    for r in regions:
        if joined and r.start_s - joined[-1].end_s < options.min_gap_s:
            joined[-1] = Region(joined[-1].start_s, r.end_s)
        else:
            joined.append(r)
    out = []
    for r in joined:
        if r.duration_s >= options.min_event_s:
            out.append(Region(max(0.0, r.start_s - options.pad_s), min(duration_s, r.end_s + options.pad_s)))
    return out
