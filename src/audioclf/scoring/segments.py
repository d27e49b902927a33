"""Segment-level evaluation: where a manifest annotates time ranges of a recording (``start``/``end`` per
label), the model segments the whole recording and is scored against those ranges."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from audioclf.evaluation.report_types import SegmentReport
from audioclf.evaluation.segment_metrics import segment_report
from audioclf.evaluation.segments import Segment, Segmenter, SegmentOptions
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item
from audioclf.labelling.apply import apply_model
from audioclf.labelling.events import EventRun, segmenter_for, with_events
from audioclf.labelling.inputs import segment_windows
from audioclf.labelling.prediction import PredictOptions, predictions_for
from audioclf.model.card import ModelKind
from audioclf.model.folder import TrainedModel

log = logging.getLogger(__name__)


def annotated_recordings(items: Sequence[Item]) -> dict[str, list[Item]]:
    """The rows with a time range, by recording."""
    out: dict[str, list[Item]] = {}
    for item in items:
        if item.start_s is not None or item.end_s is not None:
            out.setdefault(item.source, []).append(item)
    return out


def evaluate_segments(
    model: TrainedModel,
    items: Sequence[Item],
    cache_dir: Path,
    options: PredictOptions,
    *,
    fetch: FetchOptions | None = None,
    progress: bool = True,
) -> SegmentReport | None:
    """Frame- and event-level scores of the model's segments (``options.segments``, from ``options.windows`` or
    the model's with half a window's hop) of every annotated recording (None when the manifest annotates no
    time ranges, or the model labels whole recordings only)."""
    annotated = annotated_recordings(items)
    if not annotated:
        return None
    if model.thresholds is not None:
        log.warning("no segment-level scores for a multi-label model: its segments overlap, frames hold one label")
        return None
    if model.kind is ModelKind.TRANSCRIPT:
        log.warning("no segment-level scores: a transcript-features model labels whole recordings")
        return None
    whole = [Item(source, None, None, rows[0].group, rows[0].where) for source, rows in annotated.items()]
    windows = options.windows or segment_windows(model)
    preds, result = apply_model(model, whole, cache_dir, fetch=fetch, windows=windows, progress=progress)
    durations = [e.durations_s for _, e in result.embedded]
    segments = options.segments or SegmentOptions()
    events = segmenter_for(model, segments) is Segmenter.EVENTS
    chosen = PredictOptions(segments=segments, min_confidence=options.min_confidence)
    done = predictions_for(preds, durations, chosen, windows.hop_s)
    if events:
        run = EventRun(cache_dir, segments, windows.hop_s, options.min_confidence, fetch=fetch, progress=progress)
        done = with_events(done, result.embedded, model, run)
    pairs = []
    for pred in done:
        end = pred.segments[-1].end_s if pred.segments else 0.0
        reference = [_reference(row, end) for row in annotated[pred.source]]
        pairs.append((reference, pred.segments))
    if not pairs:
        return None
    return {**segment_report(pairs, model.labels), "window_s": windows.window_s, "hop_s": windows.hop_s}


def _reference(row: Item, recording_end_s: float) -> Segment:
    end = recording_end_s if row.end_s is None else row.end_s
    return Segment(row.start_s or 0.0, end, str(row.label), 1.0, 1.0)
