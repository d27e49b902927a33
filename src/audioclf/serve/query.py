"""``/v1/predict``'s query options, the same as ``predict``'s flags: top_k, segments, min_confidence, window,
hop, smooth, min_duration, timeline."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from audioclf.errors import AudioclfError
from audioclf.evaluation.segments import DEFAULT_SMOOTH, SegmentOptions
from audioclf.labelling.prediction import PredictOptions, chosen_confidence
from audioclf.model.folder import TrainedModel

DESCRIBED = {
    "top_k": ("integer", "how many labels to list, best first (default 3)"),
    "segments": ("boolean", "label the recording window by window and merge runs into segments"),
    "min_confidence": ("string", "answer unknown below this calibrated probability, or 'auto' for the model's"),
    "window": ("number", "window length in seconds (default: the model's)"),
    "hop": ("number", "hop between windows in seconds (default: the window, or half of it for segments)"),
    "smooth": ("string", f"segment smoothing: median:N, mean:N or none (default {DEFAULT_SMOOTH})"),
    "min_duration": ("number", "shortest segment in seconds; shorter runs join a neighbour"),
    "timeline": ("boolean", "also return the label of every window"),
}
KNOWN = tuple(DESCRIBED)
MAX_SMOOTH_FRAMES = 1001  # 50 s at the finest hop (0.05 s)

PREDICT_OPENAPI = {  # the request /v1/predict reads by hand, described for /docs
    "parameters": [
        {"name": k, "in": "query", "required": False, "schema": {"type": kind}, "description": text}
        for k, (kind, text) in DESCRIBED.items()
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}, "urls": {"type": "array", "items": {"type": "string"}}},
                }
            },
        },
    },
}


def options_from_query(query: Mapping[str, str], model: TrainedModel) -> PredictOptions:
    unknown = sorted(set(query) - set(KNOWN))
    if unknown:
        raise AudioclfError(f"unknown query option(s) {unknown}; accepted: {', '.join(KNOWN)}")
    segments = SegmentOptions.parse(query.get("smooth", DEFAULT_SMOOTH), read_number(query, "min_duration", 0.0))
    if segments.smooth_frames > MAX_SMOOTH_FRAMES:  # median:999999999 made scipy allocate GBs, then fail
        raise AudioclfError(f"smooth={query['smooth']!r}: smooth over at most {MAX_SMOOTH_FRAMES} windows")
    return PredictOptions(
        top_k=read_whole(query, "top_k", 3),
        timeline=read_flag(query, "timeline"),
        segments=segments if read_flag(query, "segments") else None,
        windows=model.windows.asked(_given(query, "window"), _given(query, "hop"), "window/hop"),
        min_confidence=chosen_confidence(query.get("min_confidence"), lambda: model.min_confidence),
        refuse_unsegmentable=False,  # a clip shorter than a window is one segment here, not a failed request
    )


def read_number(query: Mapping[str, str], key: str, default: float) -> float:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise AudioclfError(f"{key}={text!r}: not a number") from None
    if not math.isfinite(value):  # nan, inf, and 1e400 (which float() reads as inf)
        raise AudioclfError(f"{key}={text!r}: not a finite number")
    return value


def _given(query: Mapping[str, str], key: str) -> float | None:
    return read_number(query, key, 0.0) if key in query else None


def read_whole(query: Mapping[str, str], key: str, default: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,9}", text.strip(), re.ASCII):  # no 10**4300-digit text for int() to chew on
        raise AudioclfError(f"{key}={text!r}: use a whole number such as {default}")
    return int(text)


def read_flag(query: Mapping[str, str], key: str) -> bool:
    text = query.get(key, "false").lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise AudioclfError(f"{key}={text!r}: use true or false")
    return text in ("true", "1", "yes")
