"""A trained model applied to new files, folders and URLs: its encoder and head over their windows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from audioclf.errors import ManifestError, ModelError
from audioclf.evaluation.segments import Segmenter
from audioclf.extraction.embed import EmbedResult, Failure
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, audio_files, check_url, looks_like_url
from audioclf.labelling.apply import apply_model
from audioclf.labelling.events import EventRun, segmenter_for, with_events
from audioclf.labelling.prediction import Failed, Prediction, PredictOptions, Result, predictions_for
from audioclf.labelling.said_windows import with_said_windows
from audioclf.model.card import ModelKind
from audioclf.model.folder import TrainedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predicted:
    """Every input's answer: ``results`` in input order (a folder's files, a playlist's videos, in its place),
    each a Prediction or a Failed; ``embed``: the embedding run, with every failure in ``failures``."""

    results: list[Result]
    embed: EmbedResult

    @property
    def predictions(self) -> list[Prediction]:
        return [r for r in self.results if isinstance(r, Prediction)]


def predict_all(
    model: TrainedModel,
    inputs: Sequence[str],
    cache_dir: Path,
    options: PredictOptions | None = None,
    fetch: FetchOptions | None = None,
    *,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Predicted:
    """Files, folders (searched recursively for audio) and http(s) URLs -> a Prediction or a Failed for each
    audio input, in input order. A path that is not there is one failed input, not the end of the run."""
    options = options or PredictOptions()
    entries = _entries(inputs)
    items = [e for e in entries if isinstance(e, Item)]
    missing = [e for e in entries if isinstance(e, Failure)]
    if not items and not missing:
        raise ModelError("no audio files found in the given paths; pass audio files, folders or URLs")
    said = model.kind is ModelKind.TRANSCRIPT and (options.timeline or options.segments is not None)
    windows = options.windows
    if options.segments is not None and windows is None:
        windows = segment_windows(model)
    if not items:
        return Predicted([Failed(f.item.source, f.reason) for f in missing], EmbedResult(failures=missing))
    whole = None if said else windows  # a transcript model's answer is the whole recording's transcript
    preds, result = apply_model(model, items, cache_dir, fetch=fetch, windows=whole, progress=progress, stop=stop)
    durations = [e.durations_s for _, e in result.embedded]
    use = windows or model.windows
    if options.segments is not None:
        _check_segmentable(result, use, options.refuse_unsegmentable)
    result.failures = [*missing, *result.failures]
    done = predictions_for(preds, durations, options, use.hop_s)
    if said:  # where in the recording: each window's own transcript
        shown = windows or segment_windows(model)
        done = with_said_windows(
            done, result.embedded, model, shown, options, cache_dir, fetch=fetch, progress=progress
        )
        return Predicted(_in_input_order(entries, result, done), result)
    segments = options.segments
    if segments is not None and segmenter_for(model, segments) is Segmenter.EVENTS:
        run = EventRun(cache_dir, segments, use.hop_s, options.min_confidence, fetch=fetch, progress=progress)
        done = with_events(done, result.embedded, model, run)
    return Predicted(_in_input_order(entries, result, done), result)


def _entries(inputs: Sequence[str]) -> list[Item | Failure]:
    """Each input as its items (a folder: its audio files), or as a failure when its path is not there."""
    entries: list[Item | Failure] = []
    for text in inputs:
        if looks_like_url(text):
            url = check_url(text)
            entries.append(Item(url, None, None, "", text))
            continue
        try:
            files = audio_files([Path(text)])
        except ManifestError as exc:  # not there (or not a file): this input fails, the others go on
            log.warning("skipped %s", exc)
            entries.append(Failure(Item(str(Path(text).resolve()), None, None, "", text), str(exc)))
            continue
        entries.extend(Item(str(f.resolve()), None, None, str(f.resolve()), str(f)) for f in files)
    return entries


def _in_input_order(entries: list[Item | Failure], result: EmbedResult, preds: list[Prediction]) -> list[Result]:
    """WindowLogits (in ``result.embedded`` order) and failures placed where their input was. An item made while
    embedding (a downloaded URL, a playlist's video ``where#n``) takes its input's place by its ``where``."""
    by_id = {id(e.item if isinstance(e, Failure) else e): k for k, e in enumerate(entries)}
    by_where: dict[str, int] = {}
    for k, e in enumerate(entries):
        if isinstance(e, Item) and e.is_url:
            by_where.setdefault(e.where, k)

    def place(item: Item) -> tuple[int, int]:
        if id(item) in by_id:
            return by_id[id(item)], 0
        if item.where in by_where:
            return by_where[item.where], 0
        base, _, n = item.where.rpartition("#")
        return (by_where[base], int(n)) if base in by_where and n.isdigit() else (len(entries), 0)

    placed: list[tuple[tuple[int, int], Result]] = [
        (place(item), pred) for (item, _), pred in zip(result.embedded, preds, strict=True)
    ]
    placed += [(place(f.item), Failed(f.item.source, f.reason)) for f in result.failures]
    return [r for _, r in sorted(placed, key=lambda p: p[0])]


def _check_segmentable(result: EmbedResult, windows: WindowOptions, refuse: bool) -> None:
    """A recording shorter than one window is a single segment: say so, and (``refuse``) refuse when all of
    them are."""
    short = [(item, float(e.durations_s.sum())) for item, e in result.embedded if len(e.durations_s) == 1]
    short = [(item, seconds) for item, seconds in short if seconds < windows.window_s - 1e-6]
    if not short:
        return
    item, seconds = short[0]
    what = (
        f"{item.where}: {seconds:.2f} s of audio is shorter than one {windows.window_s:g} s window, so it is one "
        "segment; use shorter windows for segments"
    )
    if refuse and len(short) == len(result.embedded):
        raise ModelError(what + (f" ({len(short)} inputs like it)" if len(short) > 1 else ""), option="window")
    log.warning("%s (%d input(s) like it)", what, len(short))


def segment_windows(model: TrainedModel) -> WindowOptions:
    """The windows segments are made of: a model of short clips slides windows as long as the sound in its
    clips (``Segmenting.sliding_s``) every quarter window; any other its own windows, every half window unless
    its hop is finer already."""
    trained, chosen = model.windows, model.card.segmenting
    if chosen is not None and chosen.sliding_s < trained.window_s:
        use = replace(trained, window_s=chosen.sliding_s, hop_s=chosen.sliding_s / 4)
    else:
        use = replace(trained, hop_s=min(trained.hop_s, trained.window_s / 2))
    if use != trained:
        log.info(
            "segments from windows of %g s every %g s (give a window and hop to change it)", use.window_s, use.hop_s
        )
    return use
