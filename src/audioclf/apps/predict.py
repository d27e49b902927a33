"""A trained model applied to new files, folders and URLs: its encoder and head over their windows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from audioclf.apps.prediction import Prediction, PredictOptions, predictions_for
from audioclf.encoders.hf_encoder import LogitsEncoder
from audioclf.encoders.loader import (
    Encoder,
    bf16_supported,
    fit_windows,
    load_encoder,
    precision_for,
    same_weights,
)
from audioclf.errors import ModelError
from audioclf.evaluation.predictions import Predictions
from audioclf.extraction.embed import EmbedResult, embed_items
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
    if not same_weights(encoder.identity, model.encoder_identity):
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


def predict_inputs(
    model: TrainedModel,
    inputs: Sequence[str],
    cache_dir: Path,
    options: PredictOptions | None = None,
    fetch: FetchOptions | None = None,
    *,
    progress: bool = True,
) -> tuple[list[Prediction], EmbedResult]:
    """Files, folders (searched recursively for audio) and http(s) URLs -> one Prediction per readable input."""
    options = options or PredictOptions()
    items = []
    for text in inputs:
        if looks_like_url(text):
            url = check_url(text)
            items.append(Item(url, None, None, "", text))
            continue
        for f in audio_files([Path(text)]):
            items.append(Item(str(f.resolve()), None, None, str(f.resolve()), str(f)))
    if not items:
        raise ModelError("no audio files found in the given paths; pass audio files, folders or URLs")
    per_window = (model.meta.get("features") or {}).get("mode", "acoustic") != "transcript"
    if not per_window and (options.timeline or options.segments):
        log.warning("no timeline or segments: a transcript-features model labels whole recordings")
        options = replace(options, timeline=False, segments=None)
    windows = options.windows
    if options.segments is not None and windows is None:
        windows = segment_windows(model.windows)
    preds, result = apply_model(model, items, cache_dir, fetch=fetch, windows=windows, progress=progress)
    durations = [e.durations_s for _, e in result.embedded]
    use = windows or model.windows
    if options.segments is not None:
        _check_segmentable(result, use, options.refuse_unsegmentable)
    return predictions_for(preds, durations, options, use.hop_s), result


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
