"""`audioclf index`: build or extend a corpus index from a manifest, files, folders or URLs."""

from __future__ import annotations

import argparse

from audioclf.cli.options import emit, fetch_options, ray_options, window_options
from audioclf.corpus.card import CorpusError
from audioclf.corpus.plan import IndexOptions, build, source_items
from audioclf.extraction.embed import write_failures
from audioclf.io.manifest import load_manifest


def cmd_index(args: argparse.Namespace) -> int:
    if args.manifest is None and not args.sources:
        raise CorpusError("nothing to index: give audio files, folders or URLs, or a manifest", option="manifest")
    items = load_manifest(args.manifest, require_labels=False) if args.manifest is not None else []
    items += source_items(args.sources)
    windows = window_options(args)
    options = IndexOptions.parse(
        encoder=args.encoder,
        precision=args.precision,
        windows=windows,
        layer=args.layer,
        similarity=args.similarity,
        transcripts=args.transcripts,
        transcriber=args.transcriber,
        text_encoder=args.text_encoder,
        cache_dir=args.cache_dir,
        fetch=fetch_options(args, windows.max_duration_s),
        ray=ray_options(args),
        progress=not args.quiet,
    )
    summary = build(items, args.out, options)
    if summary.failures:
        if args.failures:
            write_failures(summary.failures, args.failures)
        for failure in summary.failures:
            emit(f"skipped {failure.item.where}: {failure.reason}")
    emit(summary.line())
    return 0
