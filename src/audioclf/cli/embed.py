"""`audioclf embed`: fill the embedding cache for a manifest, here or on Ray."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from audioclf.cli.options import emit, fetch_options, ray_options, window_options, worker_lines
from audioclf.encoders.loader import fit_windows, load_encoder
from audioclf.encoders.spec import Precision, parse_spec
from audioclf.extraction.embed import embed_items, write_failures
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import Item, load_manifest

if TYPE_CHECKING:
    from audioclf.extraction.ray import RayOptions


def _embed_on_ray(args: argparse.Namespace, items: list[Item], windows: WindowOptions, options: RayOptions) -> int:
    from audioclf.extraction.ray import embed_on_ray

    fetch = fetch_options(args, windows.max_duration_s)
    spec, progress = None if args.encoder is None else parse_spec(args.encoder), not args.quiet
    run = embed_on_ray(
        items, spec, Precision(args.precision), args.cache_dir, windows, fetch=fetch, options=options, progress=progress
    )
    result = run.result
    if result.failures and args.failures:
        write_failures(result.failures, args.failures)
    for line in worker_lines(run):
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
    loaded = load_encoder(None if args.encoder is None else parse_spec(args.encoder), Precision(args.precision))
    windows = fit_windows(windows, loaded.encoder)
    cache = EmbeddingCache(args.cache_dir, loaded.encoder.identity, windows)
    fetch = fetch_options(args, windows.max_duration_s)
    result = embed_items(items, loaded.encoder, cache, windows, fetch=fetch, progress=not args.quiet)
    if result.failures and args.failures:
        write_failures(result.failures, args.failures)
    emit(f"{loaded.encoder.spec}: {result.summary()}")
    return 0
