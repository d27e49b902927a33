"""The ``events`` segmenter: where something happens in a long recording (its own activity, ``activity``), each
such region classified as the model's training clips were (the region's audio through the model's encoder,
windows and probe), so a model trained on short isolated clips (spoken digits, cut-out calls, 5 s sound clips)
labels a long recording with gaps between events. A region whose best class is ``background``, that is unlike
every training clip in context, or that is more like the recording's own quiet parts than like any trained
class (``surroundings``), is not an event; one below the minimum confidence is ``unknown``. A
region longer than a segmentation window (about two training clips) is looked at through sliding windows:
where they are mostly background, the stretches that are not are classified as clips; otherwise it is
continuous sound, labelled by the windows. Nothing is labelled outside the regions."""

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
from audioclf.labelling.activity import HOP_S, ActivityOptions, Region, frame_levels_db, regions_of_levels
from audioclf.labelling.apply import apply_model
from audioclf.labelling.prediction import Prediction
from audioclf.labelling.surroundings import Surroundings, quiet_pieces, trained_sound, unlike_background
from audioclf.model.folder import TrainedModel
from audioclf.model.novelty import recording_features
from audioclf.model.probe import HeadArrays

log = logging.getLogger(__name__)
DEFAULT_ACTIVITY = ActivityOptions()
MOSTLY = 0.5  # a long region whose windows are at least this share background: events in a background


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
    segmenter's segments: short regions classified as clips; in long ones, the stretches whose windows are not
    like the recording's background, classified as clips too when short, else labelled from the windows."""
    chosen = model.card.segmenting
    longest = chosen.window_s if chosen is not None else model.windows.window_s
    recordings = [item for item, _ in embedded]
    found = [_regions(item, run.activity, chosen.clip_s if chosen is not None else longest / 2) for item in recordings]
    short = [[r for r in f.regions if r.duration_s <= longest] for f in found]
    classified, around = event_segments(model, recordings, short, [f.quiet for f in found], run)
    views = [
        _windows_in_context(model, emb, surroundings) if any(r.duration_s > longest for r in f.regions) else None
        for (_, emb), f, surroundings in zip(embedded, found, around, strict=True)
    ]
    spans = [_spans(f, emb, v, longest, run.activity) for f, (_, emb), v in zip(found, embedded, views, strict=True)]
    short_spans = [[r for r in stretches if r.duration_s <= longest] for stretches in spans]
    more, _ = event_segments(model, recordings, short_spans, None, run, around)
    out = []
    for pred, (_, emb), stretches, mine, extra, view in zip(
        predictions, embedded, spans, classified, more, views, strict=True
    ):
        long = [r for r in stretches if r.duration_s > longest]
        windows = _window_segments(pred, emb, view, model, run) if long else []
        inside = [clipped for r in long for s in windows if (clipped := _within(s, r)) is not None]
        out.append(replace(pred, segments=sorted([*mine, *extra, *inside], key=lambda s: (s.start_s, s.label))))
    return out


@dataclass(frozen=True)
class InContext:
    """One recording's sliding windows through the head trained in context."""

    probs: np.ndarray  # [windows, classes]
    aside: np.ndarray | None  # [windows]: more like the recording's own background than like any class


def _windows_in_context(model: TrainedModel, emb: Embedded, surroundings: Surroundings | None) -> InContext | None:
    """The windows of a recording with long regions, through the context head (None for a model without one,
    or multi-label: its own window scores serve), and which are like its background."""
    if model.context_head is None or model.thresholds is not None:
        return None
    scored = _in_context(model, model.context_head, [emb], per_window=True)
    probs = softmax(scored.logits)
    if surroundings is None or scored.features is None:
        return InContext(probs, None)
    return InContext(probs, surroundings.like_background(scored.features, probs, emb.starts_s + emb.durations_s / 2))


def _spans(
    found: Found, emb: Embedded, view: InContext | None, longest: float, options: ActivityOptions
) -> list[Region]:
    """The recording's long regions. One whose windows are mostly like the recording's background holds events
    in a background: only where its windows are not background is kept, each such stretch cut again where its
    level stands out from its own floor (one mostly of trained sounds is continuous sound: kept whole)."""
    long = [r for r in found.regions if r.duration_s > longest]
    if view is None or view.aside is None:
        return long
    out = []
    centres = emb.starts_s + emb.durations_s / 2
    for region in long:
        inside = (centres >= region.start_s) & (centres <= region.end_s)
        if not inside.any() or view.aside[inside].mean() < MOSTLY:
            out.append(region)
            continue
        for span in unlike_background(region, emb.starts_s, emb.durations_s, view.aside):
            first, last = round(span.start_s / HOP_S), round(span.end_s / HOP_S)
            inner = regions_of_levels(found.levels[first : max(last, first + 1)], span.duration_s, options)
            out.extend([Region(span.start_s + r.start_s, span.start_s + r.end_s) for r in inner] or [span])
    return out


def _window_segments(
    pred: Prediction, emb: Embedded, view: InContext | None, model: TrainedModel, run: EventRun
) -> list[Segment]:
    """The windows' segments, from the probe trained in context where there is one (a single-label model); a
    window more like the recording's own background than like any trained class holds no event."""
    if view is None:
        return pred.segments
    aside = None if view.aside is None else np.where(view.aside, 2.0, 0.0)
    labels, floor = list(model.labels), run.min_confidence or 0.0
    found = segments_of(emb.starts_s, emb.durations_s, view.probs, labels, run.hop_s, run.segments, floor, aside)
    if run.min_confidence is None:  # windows like the recording's background hold no trained class: not events
        return [s for s in found if s.label != UNKNOWN]
    return found


def event_segments(
    model: TrainedModel,
    recordings: Sequence[Item],
    regions: Sequence[Sequence[Region]],
    quiet: Sequence[Sequence[Region]] | None,
    run: EventRun,
    known: Sequence[Surroundings | None] | None = None,
) -> tuple[list[list[Segment]], list[Surroundings | None]]:
    """Each recording's ``regions`` classified as clips (a fetched URL is read from its downloaded file), and
    what its ``quiet`` pieces sound like (with a head trained in context), which no event resembles; or the
    surroundings ``known`` already."""
    parts: list[Item] = []
    owner: dict[str, tuple[int, Region, bool]] = {}
    for n, item in enumerate(recordings):
        pieces = [] if quiet is None else quiet[n]
        for region, is_quiet in [*((r, False) for r in regions[n]), *((r, True) for r in pieces)]:
            where = f"{item.where} {region.start_s:.2f}-{region.end_s:.2f} s{' (quiet)' if is_quiet else ''}"
            file = item.local or item.source
            parts.append(Item(file, None, None, item.group, where, start_s=region.start_s, end_s=region.end_s))
            owner[where] = (n, region, is_quiet)
    out: list[list[Segment]] = [[] for _ in recordings]
    around: list[Surroundings | None] = list(known) if known is not None else [None for _ in recordings]
    if not parts:
        return out, around
    preds, result = apply_model(model, parts, run.cache_dir, fetch=run.fetch, progress=run.progress)
    mine = [owner[item.where] for item, _ in result.embedded]
    if model.context_head is not None:  # the probe trained with clips in context: regions are clips in context
        scored = _in_context(model, model.context_head, [e for _, e in result.embedded])
        if known is None:
            around = _surroundings(model, scored.features, mine, len(recordings), softmax(scored.logits))
    else:
        scored = Scored(recording_logits(preds), preds.recording_novelty, None)
    probs = sigmoid(scored.logits) if model.thresholds is not None else softmax(scored.logits)
    trained = _trained_sounds(model, scored.features, probs)
    labels, floor = list(model.labels), run.min_confidence
    for k, (n, region, is_quiet) in enumerate(mine):
        if is_quiet:
            continue
        aside = _like_background(around[n], scored.features, probs, k, region)
        # a region the model is sure of and that is typical of its class is that class, however novel the
        # detector finds what surrounds it there
        surprise = None if scored.novelty is None or trained[k] else float(scored.novelty[k])
        out[n].extend([] if aside else _labelled(region, probs[k], labels, model.thresholds, floor, surprise))
    return out, around


def _trained_sounds(model: TrainedModel, features: np.ndarray | None, probs: np.ndarray) -> np.ndarray:
    """Per region: a trained sound (``surroundings.trained_sound``), by the context head's class means."""
    if features is None or model.context_novelty is None or model.thresholds is not None:
        return np.zeros(len(probs), dtype=bool)
    return trained_sound(features, probs, np.asarray(model.context_novelty.means, dtype=np.float64), _sounds(model))


def _sounds(model: TrainedModel) -> np.ndarray:
    """Per class: a sound, not the model's ``background``."""
    return np.array([label != BACKGROUND for label in model.labels])


def _like_background(
    surroundings: Surroundings | None, features: np.ndarray | None, probs: np.ndarray, k: int, region: Region
) -> bool:
    """Whether region ``k`` sounds more like its recording's background than like any trained class."""
    if surroundings is None or features is None:
        return False
    centre = np.array([(region.start_s + region.end_s) / 2])
    return bool(surroundings.like_background(features[k : k + 1], probs[k : k + 1], centre)[0])


def _surroundings(
    model: TrainedModel,
    features: np.ndarray | None,
    mine: list[tuple[int, Region, bool]],
    n_recordings: int,
    probs: np.ndarray,
) -> list[Surroundings | None]:
    """Each recording's background learned from its quiet pieces (with the context head's class means)."""
    if features is None or model.context_novelty is None:
        return [None] * n_recordings
    out: list[Surroundings | None] = []
    sounds = _sounds(model)
    for n in range(n_recordings):
        rows = [k for k, (who, _, is_quiet) in enumerate(mine) if who == n and is_quiet]
        times = np.array([(mine[k][1].start_s + mine[k][1].end_s) / 2 for k in rows])
        out.append(Surroundings.learn(features[rows], times, probs[rows], model.context_novelty, sounds))
    return out


@dataclass(frozen=True)
class Scored:
    logits: np.ndarray
    novelty: np.ndarray | None  # above 1: unlike every training clip (in context)
    features: np.ndarray | None  # the context head's features (what ``Surroundings`` compares)


def _in_context(model: TrainedModel, head: HeadArrays, regions: list[Embedded], *, per_window: bool = False) -> Scored:
    """Each region's (``per_window``: each window's) logits from the head trained in context, its features, and
    its novelty against that head's own detector (fitted on the clips and their copies in context; the main
    detector has never heard a clip with its surroundings and finds every region novel)."""
    x = np.concatenate([e.embeddings for e in regions])
    region = None if per_window else np.concatenate([np.full(len(e.embeddings), k) for k, e in enumerate(regions)])
    if per_window:
        logits = head.logits(x) / model.temperature
    else:
        logits = np.stack([head.logits(e.embeddings).mean(axis=0) / model.temperature for e in regions])
    features = recording_features(head, x, region)
    detector = model.context_novelty
    if detector is None:
        return Scored(logits, None, features)
    return Scored(logits, detector.distances(features) / max(detector.threshold, 1e-9), features)


def _within(segment: Segment, region: Region) -> Segment | None:
    start, end = max(segment.start_s, region.start_s), min(segment.end_s, region.end_s)
    if end - start <= 1e-6 or segment.label == BACKGROUND:
        return None
    return replace(segment, start_s=start, end_s=end)


@dataclass(frozen=True)
class Found:
    regions: list[Region]  # where something happens
    quiet: list[Region]  # pieces of what lies between the gate's regions: the recording's own background
    levels: np.ndarray  # the recording's frame levels (``frame_levels_db``, every ``HOP_S``)


def _regions(item: Item, options: ActivityOptions, piece_s: float) -> Found:
    """The recording's active regions, and its quiet pieces about ``piece_s``. Whether a long region is
    continuous sound is the windows' to say (``_spans``), not how much of the recording is loud: a background
    that comes and goes covers most of a recording too."""
    samples = load_audio(item.local or item.source)
    levels = frame_levels_db(samples, SAMPLE_RATE_HZ)
    duration = len(samples) / SAMPLE_RATE_HZ
    found = regions_of_levels(levels, duration, options)
    return Found(found, quiet_pieces(found, duration, piece_s), levels)


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
