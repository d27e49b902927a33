"""Segments and timelines of a model that reads what is said (a transcript model, trained or zero-shot): its
features are one sentence embedding per recording, so where in a long recording each class is comes from
transcribing each window on its own. Every window of the recording (the segment windows: the model's own,
every half window, unless given) becomes a time range of it, transcribed and classified as a recording
(``apply_model``, through the transcript cache), and those answers are the recording's window scores, from
which the timeline and segments are made as for any model. The whole-recording answer stays the one from the
whole transcript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from audioclf.evaluation.window_logits import WindowLogits, recording_logits
from audioclf.io.audio import MIN_TAIL_S, WindowOptions
from audioclf.io.cache import Embedded
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item
from audioclf.labelling.apply import apply_model
from audioclf.labelling.prediction import Prediction, PredictOptions, predictions_for
from audioclf.model.folder import TrainedModel


def window_ranges(duration_s: float, windows: WindowOptions) -> list[tuple[float, float]]:
    """The (start, end) of each window of a recording, as ``io.audio.window_stream`` cuts it."""
    win, hop = windows.window_s, windows.hop_s
    if duration_s <= win:
        return [(0.0, duration_s)]
    starts = list(np.arange(0.0, duration_s - win + 1e-9, hop))
    if duration_s - (starts[-1] + win) >= min(MIN_TAIL_S, win / 2):
        starts.append(duration_s - win)
    return [(float(s), float(s) + win) for s in starts]


def with_said_windows(
    predictions: Sequence[Prediction],
    embedded: Sequence[tuple[Item, Embedded]],
    model: TrainedModel,
    windows: WindowOptions,
    options: PredictOptions,
    cache_dir: Path,
    *,
    fetch: FetchOptions | None = None,
    progress: bool = True,
) -> list[Prediction]:
    """``predictions`` (one per recording of ``embedded``, in order) with timelines and segments from each
    window's own transcript (a fetched URL is read from its downloaded file)."""
    parts: list[Item] = []
    owner: dict[str, tuple[int, float, float]] = {}
    for n, (item, emb) in enumerate(embedded):
        base, file = float(emb.starts_s[0]), item.local or item.source  # where the recording starts in its file
        for start, end in window_ranges(emb.duration_s, windows):
            where = f"{item.where} {base + start:.2f}-{base + end:.2f} s"
            parts.append(Item(file, None, None, item.group, where, start_s=base + start, end_s=base + end))
            owner[where] = (n, base + start + item.offset_s, end - start)
    if not parts:
        return list(predictions)
    preds, result = apply_model(model, parts, cache_dir, fetch=fetch, windows=None, progress=progress)
    mine = [owner[item.where] for item, _ in result.embedded]
    by_window = WindowLogits(
        labels=list(model.labels),
        window_logits=recording_logits(preds),
        window_recording=np.array([n for n, _, _ in mine], dtype=np.int64),
        window_starts_s=np.array([start for _, start, _ in mine]),  # in the recording, as every model's
        recordings=[p.source for p in predictions],
        recording_true=np.full(len(predictions), -1),
        recording_groups=["" for _ in predictions],
        thresholds=preds.thresholds,
    )
    durations = [np.array([length for n, _, length in mine if n == k]) for k in range(len(predictions))]
    windowed = predictions_for(by_window, durations, options, windows.hop_s)
    return [
        replace(pred, timeline=w.timeline, segments=w.segments, scores=w.scores) if len(durations[k]) else pred
        for k, (pred, w) in enumerate(zip(predictions, windowed, strict=True))
    ]
