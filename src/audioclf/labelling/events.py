"""The ``events`` segmenter: where something happens in a long recording (its own activity, ``activity``), each
such region classified as the model's training clips were (the region's audio through the model's encoder,
windows and probe), so a model trained on short isolated clips (spoken digits, cut-out calls, 5 s sound clips)
labels a long recording with gaps between events. A region whose best class is ``background``, or that is
unlike every training clip in context, is not an event; one below the minimum confidence is ``unknown``. A
region longer than a segmentation window (about two training clips: a stretch of continuous sound), or a
recording whose regions cover most of it, is labelled by the sliding windows in it; nothing is labelled
outside the regions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from audioclf.evaluation.calibration import sigmoid, softmax
from audioclf.evaluation.segments import BACKGROUND, UNKNOWN, Segment, Segmenter, SegmentOptions, segments_of
from audioclf.evaluation.window_logits import recording_logits
from audioclf.io.audio import SAMPLE_RATE_HZ, load_audio
from audioclf.io.cache import Embedded
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item
from audioclf.labelling.activity import ActivityOptions, Region, active_regions
from audioclf.labelling.apply import apply_model
from audioclf.labelling.prediction import Prediction
from audioclf.model.folder import TrainedModel
from audioclf.model.novelty import recording_features
from audioclf.model.probe import HeadArrays

log = logging.getLogger(__name__)
DEFAULT_ACTIVITY = ActivityOptions()
CONTINUOUS_SHARE = 0.8  # regions covering this share of a recording: it is continuous sound, not events


@dataclass(frozen=True)
class EventRun:
    """What the events segmenter needs besides the model: the cache, how to fetch, the threshold."""

    cache_dir: Path
    segments: SegmentOptions  # smoothing and minimum duration of the windows' segments in long regions
    hop_s: float  # of those windows
    min_confidence: float | None = None
    activity: ActivityOptions = DEFAULT_ACTIVITY
    fetch: FetchOptions | None = None
    progress: bool = False


def segmenter_for(model: TrainedModel, options: SegmentOptions) -> Segmenter:
    """The segmenter asked for, or (``auto``) the model's own: events for a model trained on short clips."""
    if options.segmenter is not Segmenter.AUTO:
        return options.segmenter
    chosen = model.card.segmenting
    return chosen.segmenter if chosen is not None else Segmenter.WINDOWS


def with_events(
    predictions: Sequence[Prediction], embedded: Sequence[tuple[Item, Embedded]], model: TrainedModel, run: EventRun
) -> list[Prediction]:
    """``predictions`` (one per recording, in order, with their sliding windows' ``embedded``) with the events
    segmenter's segments: short regions classified as clips, long ones labelled from the windows in them."""
    longest = model.card.segmenting.window_s if model.card.segmenting is not None else model.windows.window_s
    recordings = [item for item, _ in embedded]
    regions = [_regions(item, run.activity) for item in recordings]
    short = [[r for r in found if r.duration_s <= longest] for found in regions]
    classified = event_segments(model, recordings, short, run)
    out = []
    for pred, (_, emb), found, mine in zip(predictions, embedded, regions, classified, strict=True):
        long = [r for r in found if r.duration_s > longest]
        windows = _window_segments(pred, emb, model, run) if long else []
        inside = [clipped for r in long for s in windows if (clipped := _within(s, r)) is not None]
        out.append(replace(pred, segments=sorted([*mine, *inside], key=lambda s: (s.start_s, s.label))))
    return out


def _window_segments(pred: Prediction, emb: Embedded, model: TrainedModel, run: EventRun) -> list[Segment]:
    """The windows' segments, from the probe trained in context where there is one (a single-label model)."""
    if model.context_head is None or model.thresholds is not None:
        return pred.segments
    logits, novelty = _in_context(model, model.context_head, [emb], per_window=True)
    labels, floor = list(model.labels), run.min_confidence or 0.0
    found = segments_of(emb.starts_s, emb.durations_s, softmax(logits), labels, run.hop_s, run.segments, floor, novelty)
    if run.min_confidence is None:  # frames unlike any clip in context hold no trained class: not an event
        return [s for s in found if s.label != UNKNOWN]
    return found


def event_segments(
    model: TrainedModel, recordings: Sequence[Item], regions: Sequence[Sequence[Region]], run: EventRun
) -> list[list[Segment]]:
    """Each recording's ``regions`` classified as clips (a fetched URL is read from its downloaded file)."""
    parts: list[Item] = []
    owner: dict[str, tuple[int, Region]] = {}
    for n, (item, found) in enumerate(zip(recordings, regions, strict=True)):
        for region in found:
            where = f"{item.where} {region.start_s:.2f}-{region.end_s:.2f} s"
            file = item.local or item.source
            parts.append(Item(file, None, None, item.group, where, start_s=region.start_s, end_s=region.end_s))
            owner[where] = (n, region)
    out: list[list[Segment]] = [[] for _ in recordings]
    if not parts:
        return out
    preds, result = apply_model(model, parts, run.cache_dir, fetch=run.fetch, progress=run.progress)
    if model.context_head is not None:  # the probe trained with clips in context: regions are clips in context
        logits, novelty = _in_context(model, model.context_head, [e for _, e in result.embedded])
    else:
        logits, novelty = recording_logits(preds), preds.recording_novelty
    probs = sigmoid(logits) if model.thresholds is not None else softmax(logits)
    for k, (item, _) in enumerate(result.embedded):
        n, region = owner[item.where]
        surprise = None if novelty is None else float(novelty[k])
        out[n].extend(_labelled(region, probs[k], list(model.labels), model.thresholds, run.min_confidence, surprise))
    return out


def _in_context(
    model: TrainedModel, head: HeadArrays, regions: list[Embedded], *, per_window: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each region's (``per_window``: each window's) logits from the head trained in context, and its novelty
    against that head's own detector (fitted on the clips and their copies in context; the main detector has
    never heard a clip with its surroundings and finds every region novel)."""
    x = np.concatenate([e.embeddings for e in regions])
    region = None if per_window else np.concatenate([np.full(len(e.embeddings), k) for k, e in enumerate(regions)])
    if per_window:
        logits = head.logits(x) / model.temperature
    else:
        logits = np.stack([head.logits(e.embeddings).mean(axis=0) / model.temperature for e in regions])
    detector = model.context_novelty
    if detector is None:
        return logits, None
    return logits, detector.distances(recording_features(head, x, region)) / max(detector.threshold, 1e-9)


def _within(segment: Segment, region: Region) -> Segment | None:
    start, end = max(segment.start_s, region.start_s), min(segment.end_s, region.end_s)
    if end - start <= 1e-6 or segment.label == BACKGROUND:
        return None
    return replace(segment, start_s=start, end_s=end)


def _regions(item: Item, options: ActivityOptions) -> list[Region]:
    """The recording's active regions; one region, the whole recording, when they cover most of it (sound
    after sound with no gaps between: the sliding windows label it)."""
    samples = load_audio(item.local or item.source)
    found = active_regions(samples, SAMPLE_RATE_HZ, options)
    duration = len(samples) / SAMPLE_RATE_HZ
    if found and sum(r.duration_s for r in found) >= CONTINUOUS_SHARE * duration:
        return [Region(0.0, duration)]
    return found


def _labelled(
    region: Region,
    probs: np.ndarray,
    labels: list[str],
    thresholds: np.ndarray | None,
    min_confidence: float | None,
    novelty: float | None,
) -> list[Segment]:
    """The segment(s) of one classified region: none for background or for a region unlike any training clip
    in context (no trained class is there); ``unknown`` below the minimum confidence; a multi-label model's
    every label over its threshold."""
    if thresholds is not None:
        on = [k for k in range(len(labels)) if probs[k] >= thresholds[k] and labels[k] != BACKGROUND]
        return [Segment(region.start_s, region.end_s, labels[k], float(probs[k]), float(probs[k])) for k in on]
    k = int(np.argmax(probs))
    p = float(probs[k])
    if labels[k] == BACKGROUND or (novelty is not None and novelty > 1.0):
        return []
    unsure = min_confidence is not None and p < min_confidence
    return [Segment(region.start_s, region.end_s, UNKNOWN if unsure else labels[k], p, p)]
