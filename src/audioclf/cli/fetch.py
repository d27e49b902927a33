"""`audioclf fetch`: download the URL rows of a manifest into the cache."""

from __future__ import annotations

import argparse
import logging

from audioclf.cli.options import emit, fetch_options, ray_options, worker_lines
from audioclf.errors import ManifestError
from audioclf.extraction.embed import Failure, write_failures
from audioclf.io.download import fetch_all
from audioclf.io.manifest import load_manifest

log = logging.getLogger("audioclf")


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
        for line in worker_lines(run, audio=False):
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
