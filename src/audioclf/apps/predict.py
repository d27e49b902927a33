"""A trained model applied to new files, folders and URLs: its encoder and head over their windows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from audioclf.apps.prediction import Failed, Prediction, PredictOptions, Result, predictions_for
from audioclf.encoders.hf_encoder import LogitsEncoder
from audioclf.encoders.loader import (
    Encoder,
    bf16_supported,
    fit_windows,
    load_encoder,
    precision_for,
    same_weights,
)
from audioclf.errors import ManifestError, ModelError
from audioclf.evaluation.predictions import Predictions
from audioclf.extraction.embed import EmbedResult, Failure, embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, audio_files, check_url, looks_like_url
from audioclf.speech.text_features import view_for
from audioclf.speech.transcribe import Transcript
from audioclf.training.model_dir import TrainedModel
from audioclf.training.novelty_detector import probe_features, unit_means

log = logging.getLogger(__name__)


def apply_model(
    model: TrainedModel,
    items: Sequence[Item],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None = None,
    windows: WindowOptions | None = None,
    progress: bool = True,
) -> tuple[Predictions, EmbedResult]:
    """Embed ``items`` with the model's own encoder and settings (through the cache) and run the head.
    ``windows`` replaces the model's windows (within what its encoder reads)."""
    if model.finetuned:
        assert model.path is not None
        return _apply_finetuned(model, model.path, items, cache_dir, fetch=fetch, windows=windows, progress=progress)
    encoder = loaded_encoder(model.encoder_spec, precision_for(model.encoder_identity))
    if not same_weights(encoder.identities, model.encoder_identity):
        raise ModelError(
            f"encoder {model.encoder_spec} now has different weights ({encoder.identity}) than at training "
            f"({model.encoder_identity}); retrain the model or restore the original encoder"
        )
    use = windows_for(model, encoder, windows)
    view = view_for(model.meta, encoder, cache_dir, use, model.path)
    if view is None:
        encoder = as_deep_as_the_probe(model, encoder)
    cache = EmbeddingCache(cache_dir, encoder.identity, use)
    same_pass = view.same_pass_cache if view is not None else None
    result = embed_items(items, encoder, cache, use, fetch=fetch, progress=progress, transcripts=same_pass)
    head = model.head
    assert head is not None
    t = model.temperature  # 1 for a fused model: its views carry their own temperatures
    if view is None:
        preds = _predictions(model, result.embedded, lambda x: head.logits(x) / t)
        return replace(_novelty(model, preds, result.embedded), thresholds=model.thresholds), result
    text, said = view.apply(result.embedded)
    if model.fusion is None:  # transcript features
        return _predictions(model, text, lambda x: head.logits(x) / t, said), result
    fusion = model.fusion
    text_x = np.concatenate([e.embeddings for _, e in text]) if text else np.zeros((0, 1, view.text.dim), np.float32)
    preds = _predictions(model, result.embedded, lambda x: head.logits(x), said)
    views = fusion.views(preds.window_logits, preds.window_recording, text_x)
    return replace(preds, window_logits=views["fused"], views=views), result


def _apply_finetuned(
    model: TrainedModel,
    folder: Path,
    items: Sequence[Item],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None,
    windows: WindowOptions | None,
    progress: bool,
) -> tuple[Predictions, EmbedResult]:
    encoder = loaded_logits_encoder(folder, bf16_supported())
    if encoder.dim != len(model.labels):
        raise ModelError(f"{folder}: config.json has {encoder.dim} labels, audioclf.json {len(model.labels)}")
    use = windows_for(model, encoder, windows)
    cache = EmbeddingCache(cache_dir, encoder.identity, use)
    result = embed_items(items, encoder, cache, use, fetch=fetch, progress=progress)
    preds = _predictions(model, result.embedded, lambda x: x[:, 0, :])
    return replace(preds, thresholds=model.thresholds), result


def loaded_encoder(spec: str, precision: str) -> Encoder:
    """An encoder loaded once per process and reused by every later prediction (a server, a notebook), until
    the files of a local model folder change."""
    return _cached_encoder(spec, precision, _files_stamp(spec.split(":", 1)[-1]))


def loaded_logits_encoder(folder: Path, bf16: bool) -> LogitsEncoder:
    return _cached_logits_encoder(folder, bf16, _files_stamp(str(folder)))


@lru_cache(maxsize=2)
def _cached_encoder(spec: str, precision: str, stamp: tuple[tuple[str, int, int], ...]) -> Encoder:
    return load_encoder(spec, precision).encoder


@lru_cache(maxsize=2)
def _cached_logits_encoder(folder: Path, bf16: bool, stamp: tuple[tuple[str, int, int], ...]) -> LogitsEncoder:
    return LogitsEncoder(folder, bf16=bf16)


def _files_stamp(target: str) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of the files of a local folder (empty for a hub id or a name)."""
    folder = Path(target)
    if not folder.is_dir():
        return ()
    return tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir() if f.is_file()))


def windows_for(model: TrainedModel, encoder: Encoder, windows: WindowOptions | None) -> WindowOptions:
    """The model's windows, or ``windows`` where they fit its encoder (a window longer than a fixed-length input
    is refused); windows of another length than at training are allowed, with a note."""
    if windows is None:
        return model.windows
    use = fit_windows(windows, encoder)
    if abs(use.window_s - model.windows.window_s) > 1e-9:
        log.info(
            "windows of %g s; the model was trained on windows of up to %g s: where its training audio was longer,"
            " its scores may be less reliable",
            use.window_s,
            model.windows.window_s,
        )
    return use


def as_deep_as_the_probe(model: TrainedModel, encoder: Encoder) -> Encoder:
    """A probe on one layer that is not the last: the encoder stops there (encoders.early_exit)."""
    layer = model.head.config.layer if model.head is not None else ""
    up_to = getattr(encoder, "up_to", None)
    if not layer.isdigit() or up_to is None or int(layer) >= encoder.n_layers - 1:
        return encoder
    early: Encoder = up_to(int(layer))
    if early is not encoder:
        log.debug("the probe reads layer %s of %d: the encoder stops there", layer, encoder.n_layers - 1)
    return early


def _novelty(model: TrainedModel, preds: Predictions, embedded: Sequence[tuple[Item, Embedded]]) -> Predictions:
    """Each recording's and each window's distance to the training audio over the model's threshold (left None
    without a detector)."""
    detector = model.novelty
    if detector is None or not embedded or model.head is None:
        return preds
    features = probe_features(model.head, np.concatenate([e.embeddings for _, e in embedded]))
    scale = max(detector.threshold, 1e-9)
    recordings = detector.distances(unit_means(features, preds.window_recording)) / scale
    windows = detector.distances(unit_means(features, None)) / scale
    return replace(preds, recording_novelty=recordings, window_novelty=windows)


def _predictions(
    model: TrainedModel,
    embedded: Sequence[tuple[Item, Embedded]],
    logits_of: Callable[[np.ndarray], np.ndarray],
    said: list[Transcript] | None = None,
) -> Predictions:
    index = {label: i for i, label in enumerate(model.labels)}
    x = np.concatenate([e.embeddings for _, e in embedded]) if embedded else np.zeros((0, 1, 1), np.float32)
    return Predictions(
        labels=list(model.labels),
        window_logits=logits_of(x) if embedded else np.zeros((0, len(model.labels)), np.float32),
        window_recording=np.concatenate([np.full(len(e.embeddings), i) for i, (_, e) in enumerate(embedded)])
        if embedded
        else np.zeros(0, dtype=np.int64),
        window_starts_s=np.concatenate([e.starts_s + item.offset_s for item, e in embedded])
        if embedded
        else np.zeros(0),
        recordings=[item.source for item, _ in embedded],
        recording_true=np.array([index.get(item.label, -1) if item.label else -1 for item, _ in embedded]),
        recording_groups=[item.group for item, _ in embedded],
        transcripts=said,
    )


@dataclass(frozen=True)
class Predicted:
    """Every input's answer: ``results`` in input order (a folder's files, a playlist's videos, in its place),
    each a Prediction or a Failed; ``embed``: the embedding run, with every failure in ``failures``."""

    results: list[Result]
    embed: EmbedResult

    @property
    def predictions(self) -> list[Prediction]:
        return [r for r in self.results if isinstance(r, Prediction)]


def predict_inputs(
    model: TrainedModel,
    inputs: Sequence[str],
    cache_dir: Path,
    options: PredictOptions | None = None,
    fetch: FetchOptions | None = None,
    *,
    progress: bool = True,
) -> tuple[list[Prediction], EmbedResult]:
    """Files, folders (searched recursively for audio) and http(s) URLs -> one Prediction per readable input;
    the others are in the result's ``failures``."""
    done = predict_all(model, inputs, cache_dir, options, fetch, progress=progress)
    return done.predictions, done.embed


def predict_all(
    model: TrainedModel,
    inputs: Sequence[str],
    cache_dir: Path,
    options: PredictOptions | None = None,
    fetch: FetchOptions | None = None,
    *,
    progress: bool = True,
) -> Predicted:
    """Files, folders (searched recursively for audio) and http(s) URLs -> a Prediction or a Failed for each
    audio input, in input order. A path that is not there is one failed input, not the end of the run."""
    options = options or PredictOptions()
    entries = _entries(inputs)
    items = [e for e in entries if isinstance(e, Item)]
    missing = [e for e in entries if isinstance(e, Failure)]
    if not items and not missing:
        raise ModelError("no audio files found in the given paths; pass audio files, folders or URLs")
    per_window = (model.meta.get("features") or {}).get("mode", "acoustic") != "transcript"
    if not per_window and (options.timeline or options.segments):
        log.warning("no timeline or segments: a transcript-features model labels whole recordings")
        options = replace(options, timeline=False, segments=None)
    windows = options.windows
    if options.segments is not None and windows is None:
        windows = segment_windows(model.windows)
    if not items:
        return Predicted([Failed(f.item.source, f.reason) for f in missing], EmbedResult(failures=missing))
    preds, result = apply_model(model, items, cache_dir, fetch=fetch, windows=windows, progress=progress)
    durations = [e.durations_s for _, e in result.embedded]
    use = windows or model.windows
    if options.segments is not None:
        _check_segmentable(result, use, options.refuse_unsegmentable)
    result.failures = [*missing, *result.failures]
    done = predictions_for(preds, durations, options, use.hop_s)
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
    """Predictions (in ``result.embedded`` order) and failures placed where their input was. An item made while
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


def segment_windows(trained: WindowOptions) -> WindowOptions:
    """Segments want a hop finer than the window: half the model's window unless its hop is finer already."""
    hop = min(trained.hop_s, trained.window_s / 2)
    if hop < trained.hop_s:
        log.info("segments from windows of %g s every %g s (give a window and hop to change it)", trained.window_s, hop)
    return replace(trained, hop_s=hop)
