"""The CLI's commands: each parses nothing and computes nothing itself, it calls the library and prints."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from audioclf.apps.evaluate_model import evaluate_model
from audioclf.apps.predict import predict_inputs
from audioclf.cli.options import EXIT_OK, EXIT_PARTIAL, emit, emit_json, fetch_options, ray_options, window_options
from audioclf.cli.train_commands import (
    cmd_crossval as cmd_crossval,  # the training commands live there; main() finds them here
)
from audioclf.cli.train_commands import cmd_train as cmd_train
from audioclf.encoders.loader import fit_windows, load_encoder
from audioclf.errors import DecodeError, ManifestError
from audioclf.evaluation.report import summary_lines
from audioclf.extraction.embed import Failure, embed_items, write_failures
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.download import fetch_all
from audioclf.io.manifest import Item, load_manifest
from audioclf.training.model_dir import load_model

if TYPE_CHECKING:
    from audioclf.extraction.ray import RayOptions, RayRun

log = logging.getLogger("audioclf")


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    fetch = fetch_options(args, model.windows.max_duration_s)
    done = evaluate_model(
        model, args.manifest, args.cache_dir, split=args.split, out=args.out, fetch=fetch, progress=not args.quiet
    )
    for line in summary_lines(done.report):
        emit(line)
    see = f" — see {done.out / 'failures.csv'}" if done.embed.failures else ""
    emit(f"data        {done.embed.summary()}{see}")
    emit("wrote       " + ", ".join(str(p) for p in done.paths))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    preds, result = predict_inputs(
        model,
        args.inputs,
        args.cache_dir,
        fetch=fetch_options(args, model.windows.max_duration_s),
        top_k=args.top_k,
        timeline=args.timeline,
        progress=not args.quiet,
    )
    if not preds:
        first = result.failures[0].reason
        raise DecodeError(first if len(result.failures) == 1 else f"no file could be read; first: {first}")
    for pred in preds:
        if args.json:
            emit_json(pred.as_dict())
            continue
        top = "  ".join(f"{label} {p:.3f}" for label, p in pred.top)
        emit(f"{pred.source}\t{pred.label}\t{top}")
        for w in pred.timeline:
            emit(f"  {w.start_s:8.1f}-{w.end_s:<8.1f} {w.label} {w.probability:.3f}")
    if not result.failures:
        return EXIT_OK
    for f in result.failures if args.json else []:  # a consumer of the JSON lines sees every input accounted for
        emit_json({"source": f.item.source, "error": f.reason})
    log.warning("%d input(s) could not be read: %s", len(result.failures), "; ".join(f.reason for f in result.failures))
    return EXIT_PARTIAL


def _worker_lines(run: RayRun, audio: bool = True) -> list[str]:
    """A row per Ray actor process: what it did and how long it was busy (encoding, or downloading for
    ``fetch``); an embedding actor downloads one chunk while it encodes another."""
    head = f"{'worker':<24} {'chunks':>6} {'items':>6} {'busy(s)':>8}"
    lines = [head + (f" {'download(s)':>11} {'audio(h)':>8} {'x realtime':>10}" if audio else "")]
    for w in run.workers:
        rate = f"{w.audio_s / w.busy_s:.0f}" if w.audio_s and w.busy_s else "-"
        tail = f" {w.download_s:>11.1f} {w.audio_s / 3600:>8.3f} {rate:>10}" if audio else ""
        lines.append(f"{w.worker:<24} {w.chunks:>6} {w.items:>6} {w.busy_s:>8.1f}{tail}")
    return lines


def _embed_on_ray(args: argparse.Namespace, items: list[Item], windows: WindowOptions, options: RayOptions) -> int:
    from audioclf.extraction.ray import embed_on_ray

    fetch = fetch_options(args, windows.max_duration_s)
    spec, progress = args.encoder, not args.quiet
    run = embed_on_ray(
        items, spec, args.precision, args.cache_dir, windows, fetch=fetch, options=options, progress=progress
    )
    result = run.result
    if result.failures and args.failures:
        write_failures(result.failures, args.failures)
    for line in _worker_lines(run):
        emit(line)
    hours = result.audio_s / 3600
    emit(f"{spec or 'default encoder'} on Ray: {result.summary()}; {hours:.2f} h of audio in {result.seconds:.0f} s")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    items = load_manifest(args.manifest, require_labels=False)
    windows = window_options(args)
    ray = ray_options(args)
    if ray is not None:
        return _embed_on_ray(args, items, windows, ray)
    loaded = load_encoder(args.encoder, args.precision)
    windows = fit_windows(windows, loaded.encoder)
    cache = EmbeddingCache(args.cache_dir, loaded.encoder.identity, windows)
    fetch = fetch_options(args, windows.max_duration_s)
    result = embed_items(items, loaded.encoder, cache, windows, fetch=fetch, progress=not args.quiet)
    if result.failures and args.failures:
        write_failures(result.failures, args.failures)
    emit(f"{loaded.encoder.spec}: {result.summary()}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    items = [item for item in load_manifest(args.manifest, require_labels=False) if item.is_url]
    if not items:
        raise ManifestError(f"{args.manifest}: no URL rows to fetch")
    fetch, ray = fetch_options(args, args.max_duration), ray_options(args)
    if ray is None:
        done = list(fetch_all(items, fetch))
    else:
        from audioclf.extraction.ray import fetch_on_ray

        run = fetch_on_ray(items, fetch, options=ray, progress=not args.quiet)
        done = run.fetched
        for line in _worker_lines(run, audio=False):
            emit(line)
    failures = [Failure(r.item, r.error) for r in done if r.error is not None]
    for failure in failures:
        log.warning("failed %s: %s", failure.item.where, failure.reason)
    if failures and args.failures:
        write_failures(failures, args.failures)
    tail = f" — see {args.failures}" if failures and args.failures else ""
    fetched = len(done) - len(failures)
    downloaded = sum(r.fresh for r in done if r.error is None)
    emit(
        f"{fetched} fetched ({downloaded} downloaded now, {fetched - downloaded} already cached), "
        f"{len(failures)} failed{tail}"
    )
    return 0
