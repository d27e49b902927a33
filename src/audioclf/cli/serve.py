"""`audioclf serve`: a model, a corpus index or both behind an HTTP API and a web page (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from audioclf.annotation.labels import Mode
from audioclf.cli.options import EXIT_OK, size_bytes
from audioclf.corpus.index import Index
from audioclf.errors import AudioclfError
from audioclf.model.folder import TrainedModel, load_model

log = logging.getLogger("audioclf")
TOKEN_ENV = "AUDIOCLF_TOKEN"


def cmd_serve(args: argparse.Namespace) -> int:
    if args.model is None and args.index is None:
        raise AudioclfError("serve what? give a trained model (--model DIR), a corpus index (--index IDX) or both")
    labels = getattr(args, "labels", None)
    if labels is not None and args.index is None:
        raise AudioclfError("--labels are made on an index: give --index IDX too", option="labels")
    return run_server(args, args.model, args.index, labels, getattr(args, "annotator", None) or "")


def run_server(
    args: argparse.Namespace, model_dir: Path | None, index_dir: Path | None, labels: Path | None, annotator: str
) -> int:
    """Load what is served, bind, and serve until interrupted: ``serve`` and ``review`` both end here. Reads the
    server's options from ``args``, each with serve's default when the command has no such flag."""
    try:
        from audioclf.serve.app import create_app
        from audioclf.serve.options import ServeOptions, http_url
        from audioclf.serve.server import bind, serve
    except ImportError as exc:
        raise AudioclfError(
            f"serving needs the serve extra ({exc.name} is missing): pip install 'audioclf[serve]'"
        ) from None
    defaults = ServeOptions()
    max_upload = getattr(args, "max_upload", None)
    max_filesize = getattr(args, "max_filesize", None)
    cache_dir = getattr(args, "cache_dir", None)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None,
        max_upload_bytes=size_bytes("--max-upload", max_upload) if max_upload else defaults.max_upload_bytes,
        max_queue=getattr(args, "max_queue", defaults.max_queue),
        timeout_s=getattr(args, "timeout", defaults.timeout_s),
        cors_origin=getattr(args, "cors_origin", None),
        allow_private_urls=getattr(args, "allow_private_urls", False),
        max_filesize_bytes=size_bytes("--max-filesize", max_filesize) if max_filesize else None,
        cache_dir=cache_dir,
    )
    model = None if model_dir is None else load_model(model_dir)
    index = None if index_dir is None else open_index(index_dir, cache_dir)
    try:
        sock = bind(options.host, options.port)  # before saying "serving": a port in use is one line, exit 2
        try:
            mode = Mode.MULTI if getattr(args, "multi_label", False) else None
            app = create_app(model, options, index, labels_path=labels, annotator=annotator, labels_mode=mode)
        except BaseException:
            sock.close()
            raise
    except BaseException:
        if index is not None:
            index.close()
        raise
    port = sock.getsockname()[1]  # the one given, or the free one picked for port 0
    log.info("serving %s on %s", _what(model_dir, index_dir, labels, model, index), http_url(options.host, port))
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


def _what(
    model_dir: Path | None, index_dir: Path | None, labels: Path | None, model: TrainedModel | None, index: Index | None
) -> str:
    parts = []
    if model is not None:
        parts.append(f"{model_dir} ({len(model.labels)} labels)")
    if index is not None:
        n_recordings, n_windows = index.store.counts()
        parts.append(f"index {index_dir} ({n_recordings} recordings, {n_windows} windows)")
    if labels is not None:
        parts.append(f"the review of {labels} (the page's Review tab)")
    return " and ".join(parts)
