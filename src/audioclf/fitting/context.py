"""Training clips shown in context: a model trained on short isolated clips (spoken digits trimmed to the word,
cut-out calls) has never heard the quiet before and after an event, yet that is what a region found in a long
recording holds. Each short clip is also embedded with a random stretch of background on either side, and
under it, so the probe learns the clip, not the clip's exact edges.

The background is the manifest's ``background`` rows where there are some (real background the user has),
otherwise digital silence or low noise at a random level under the clip (what a quiet gap sounds like). The
copies are windows of the clip's own recording: they stay on its side of every grouped split."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace

import numpy as np

from audioclf.encoders.loader import Encoder
from audioclf.evaluation.segments import BACKGROUND, Segmenter
from audioclf.extraction.embed import EmbedResult
from audioclf.fitting.data import Dataset
from audioclf.fitting.novelty import fit_novelty
from audioclf.fitting.probe import FitOptions
from audioclf.fitting.selection import Candidate, refit
from audioclf.io.cache import AudioCache, Embedded
from audioclf.io.manifest import Item
from audioclf.labelling.activity import active_regions
from audioclf.model.novelty import Novelty, recording_features
from audioclf.model.probe import HeadArrays
from audioclf.model.segmenting import SHORT_CLIP_FRACTION, Segmenting

log = logging.getLogger(__name__)

COPIES = 2  # context copies of each short clip
MAX_PAD_S = 0.3  # background on either side, at most
BATCH = 64


class Context(enum.StrEnum):
    AUTO = "auto"  # copies when the training clips are short against the window (their Segmenting is events)
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class ContextPlan:
    copies: int
    window_s: float
    seed: int = 0


def plan_context(choice: Context, segmenting: Segmenting | None, window_s: float, seed: int) -> ContextPlan | None:
    """Whether (and how) to add context copies: ``auto`` when the clips are short against the window, by the
    same rule that makes their model segment by events (``Segmenting``)."""
    if choice is Context.OFF or segmenting is None:
        return None
    short = segmenting.segmenter is Segmenter.EVENTS
    return ContextPlan(COPIES, window_s, seed) if choice is Context.ON or short else None


def with_context(embedded: EmbedResult, encoder: Encoder, audio: AudioCache, plan: ContextPlan) -> EmbedResult:
    """``embedded`` with ``plan.copies`` context copies appended to the windows of each short clip."""
    rng = np.random.default_rng(plan.seed)
    backgrounds = [audio.load(item) for item, _ in embedded.embedded if item.label == BACKGROUND]
    out: list[tuple[Item, Embedded]] = []
    todo: list[tuple[int, np.ndarray]] = []
    for n, (item, emb) in enumerate(embedded.embedded):
        out.append((item, emb))
        if item.label == BACKGROUND or emb.duration_s >= SHORT_CLIP_FRACTION * plan.window_s:
            continue
        clip = np.asarray(audio.load(item), dtype=np.float32)
        todo.extend((n, _canvas(clip, backgrounds, plan.window_s, rng, audio.rate)) for _ in range(plan.copies))
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        vectors = encoder.embed([w for _, w in batch])
        for (n, window), vector in zip(batch, vectors, strict=True):
            item, emb = out[n]
            out[n] = (item, _appended(emb, vector, len(window) / audio.rate))
    log.info("trained with %d context copies of %d short clips", len(todo), len(todo) // max(1, plan.copies))
    embedded.embedded = out
    return embedded


def with_sound_extent(segmenting: Segmenting, embedded: EmbedResult, audio: AudioCache) -> Segmenting:
    """``segmenting`` with the median extent of the sound in the training clips (from the first to the last
    stretch of activity in each, ``labelling.activity``): 5 s clips padded around a 1 s sound slide 1 s
    windows over a long recording, not 5 s ones."""
    extents = []
    for item, emb in embedded.embedded:
        if item.label == BACKGROUND:
            continue
        found = active_regions(np.asarray(audio.load(item), dtype=np.float32), audio.rate)
        extents.append(found[-1].end_s - found[0].start_s if found else emb.duration_s)
    return replace(segmenting, event_s=round(float(np.median(extents)), 3)) if extents else segmenting


def _canvas(
    clip: np.ndarray, backgrounds: list[np.ndarray], window_s: float, rng: np.random.Generator, rate: int
) -> np.ndarray:
    """The clip (at ``rate``) with up to ``MAX_PAD_S`` of background on either side (within the window) and
    under it."""
    room = max(0.0, window_s * rate - len(clip)) / 2
    before, after = (int(rng.uniform(0, min(MAX_PAD_S * rate, room))) for _ in range(2))
    canvas = np.zeros(before + len(clip) + after, dtype=np.float32)
    canvas[before : before + len(clip)] = clip
    peak = float(np.sqrt(np.mean(clip**2))) or 1e-4
    if backgrounds:
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        piece = np.resize(bg[int(rng.integers(max(1, len(bg) - len(canvas)))) :], len(canvas))
        level = float(np.sqrt(np.mean(piece**2))) or 1.0
        canvas += piece * (peak * 10 ** (-rng.uniform(10, 30) / 20) / level)
    elif rng.random() < 0.5:  # a quiet gap: low noise (else digital silence)
        canvas += rng.standard_normal(len(canvas)).astype(np.float32) * peak * 10 ** (-rng.uniform(30, 60) / 20)
    return canvas


def _appended(emb: Embedded, vector: np.ndarray, duration_s: float) -> Embedded:
    return Embedded(
        np.concatenate([emb.embeddings, vector[None]]),
        np.concatenate([emb.starts_s, [0.0]]),
        np.concatenate([emb.durations_s, [duration_s]]),
        emb.n_copies + 1,
    )


def refit_in_context(
    data: Dataset, chosen: Candidate, n_classes: int, fit: FitOptions
) -> tuple[HeadArrays | None, Novelty | None]:
    """The chosen probe refitted on the recordings and their context copies (None without copies), what the
    events segmenter classifies regions of long recordings with, and its novelty detector (each clip and each
    copy alone: a region is one clip in context). The main probe never sees the copies, so what a whole clip is
    called does not change."""
    if data.copies is None:
        return None, None
    head = HeadArrays.from_head(refit(data, n_classes, chosen, fit)[0])
    copy_ids = np.cumsum(data.copies) - 1 + len(data.items)
    sample = np.where(data.copies, copy_ids, data.recording)
    features = recording_features(head, data.x.numpy(), sample)
    n_samples = len(data.items) + int(data.copies.sum())
    y, groups = np.zeros(n_samples, np.int64), [""] * n_samples
    for k, (who, label) in enumerate(zip(sample, data.y, strict=True)):
        y[who], groups[who] = label, data.items[data.recording[k]].group
    return head, fit_novelty(features, y, groups)


def segmenting_in_context(
    segmenting: Segmenting | None, head: HeadArrays | None, novelty: Novelty | None
) -> Segmenting | None:
    if segmenting is None or head is None:
        return segmenting
    return replace(segmenting, context_head=True, context_novelty=None if novelty is None else novelty.threshold)
