"""`audioclf serve`: a model, a corpus index or both behind an HTTP API and a web page (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from audioclf.cli.options import EXIT_OK, size_bytes
from audioclf.corpus.index import Index
from audioclf.errors import AudioclfError
from audioclf.model.folder import TrainedModel, load_model

log = logging.getLogger("audioclf")
TOKEN_ENV = "AUDIOCLF_TOKEN"


def cmd_serve(args: argparse.Namespace) -> int:
    if args.model is None and args.index is None:
        raise AudioclfError("serve what? give a trained model (--model DIR), a corpus index (--index IDX) or both")
    try:
        from audioclf.serve.app import create_app
        from audioclf.serve.options import ServeOptions, http_url
        from audioclf.serve.server import bind, serve
    except ImportError as exc:
        raise AudioclfError(
            f"serving needs the serve extra ({exc.name} is missing): pip install 'audioclf[serve]'"
        ) from None
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        max_upload_bytes=size_bytes("--max-upload", args.max_upload),
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        cors_origin=args.cors_origin,
        allow_private_urls=args.allow_private_urls,
        max_filesize_bytes=size_bytes("--max-filesize", args.max_filesize) if args.max_filesize else None,
        cache_dir=args.cache_dir,
    )
    model = None if args.model is None else load_model(args.model)
    index = None if args.index is None else open_index(args.index, args.cache_dir)
    try:
        sock = bind(options.host, options.port)  # before saying "serving": a port in use is one line, exit 2
        try:
            app = create_app(model, options, index)
        except BaseException:
            sock.close()
            raise
    except BaseException:
        if index is not None:
            index.close()
        raise
    port = sock.getsockname()[1]  # the one given, or the free one picked for port 0
    log.info("serving %s on %s", _what(args, model, index), http_url(options.host, port))
    serve(app, sock, options)  # the app closes the index when it stops
    return EXIT_OK


def open_index(folder: Path, cache_dir: Path | None) -> Index:
    """The index, its card read and its encoder loaded now: a missing or corrupt index, or one whose encoder
    changed, is one line before anything listens."""
    index = Index.open(folder, cache_dir=cache_dir)
    try:
        n_windows = len(index)
        index.encoder  # noqa: B018 - loaded once, before the first search waits for it
    except BaseException:
        index.close()
        raise
    if not n_windows:
        log.warning("%s: the index is empty; searches answer with an error until recordings are added", folder)
    return index


def _what(args: argparse.Namespace, model: TrainedModel | None, index: Index | None) -> str:
    parts = []
    if model is not None:
        parts.append(f"{args.model} ({len(model.labels)} labels)")
    if index is not None:
        n_recordings, n_windows = index.store.counts()
        parts.append(f"index {args.index} ({n_recordings} recordings, {n_windows} windows)")
    return " and ".join(parts)
