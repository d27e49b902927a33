"""How a model segments long recordings by default, chosen at training from its clips (``Segmenting``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audioclf.evaluation.segments import Segmenter
from audioclf.fileio import JSONObject

SHORT_CLIP_FRACTION = 0.8  # training clips shorter than this share of a window: isolated events
MIN_SEGMENT_WINDOW_S = 0.5
MIN_SLIDING_S = 0.25  # sliding windows of an events model are never shorter


@dataclass(frozen=True)
class Segmenting:
    """How segments are made by default with this model, chosen from its training audio. Clips that fill less
    than ``SHORT_CLIP_FRACTION`` of a window (isolated events: spoken digits, cut-out calls, 5 s sound clips in
    10 s windows) are found as events, and a stretch of activity longer than an event is labelled from windows
    of about two clips (``window_s``, every quarter of it); otherwise every frame is labelled from the model's
    own windows."""

    segmenter: Segmenter  # WINDOWS or EVENTS, never AUTO
    clip_s: float  # the median duration of the training recordings
    window_s: float  # the windows segments are made of by default
    context_head: bool = False  # the events segmenter classifies regions with the head trained in context
    context_novelty: float | None = None  # the threshold of that head's novelty detector (None: none)
    event_s: float | None = None  # the median extent of the sound in the clips: the windows of long regions

    @property
    def sliding_s(self) -> float:
        """The sliding windows' length: a training clip's sound (``event_s``, not the clip's padding), within
        ``window_s``."""
        if self.segmenter is Segmenter.WINDOWS:
            return self.window_s
        return min(self.window_s, max(MIN_SLIDING_S, self.event_s if self.event_s is not None else self.clip_s))

    @classmethod
    def of(cls, durations_s: Sequence[float], window_s: float) -> Segmenting | None:
        if not len(durations_s):
            return None
        clip = float(np.median(durations_s))
        if clip >= SHORT_CLIP_FRACTION * window_s:
            return cls(Segmenter.WINDOWS, round(clip, 3), window_s)
        segment_window = min(window_s, max(MIN_SEGMENT_WINDOW_S, round(2 * clip, 1)))
        return cls(Segmenter.EVENTS, round(clip, 3), segment_window)

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"segmenter": str(self.segmenter), "clip_s": self.clip_s, "window_s": self.window_s}
        optional = {"context_head": self.context_head or None, "context_novelty": self.context_novelty}
        out.update({key: value for key, value in {**optional, "event_s": self.event_s}.items() if value is not None})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Segmenting | None:
        if not data:
            return None
        chosen = Segmenter(str(data["segmenter"]))
        if chosen is Segmenter.AUTO:
            raise ValueError("a model's segmenter is windows or events")
        novelty = data.get("context_novelty")
        threshold = None if novelty is None else float(novelty)
        context = bool(data.get("context_head", False))
        event = data.get("event_s")
        clip, window = float(data["clip_s"]), float(data["window_s"])
        return cls(chosen, clip, window, context, threshold, None if event is None else float(event))
