"""`audioclf serve`: the model behind an HTTP API and a web page (uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os

from audioclf.cli.options import EXIT_OK, size_bytes
from audioclf.errors import AudioclfError
from audioclf.model.folder import load_model

log = logging.getLogger("audioclf")
TOKEN_ENV = "AUDIOCLF_TOKEN"


def cmd_serve(args: argparse.Namespace) -> int:
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
    model = load_model(args.model)
    sock = bind(options.host, options.port)  # before saying "serving": a port in use is one line, exit 2
    try:
        app = create_app(model, options)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]  # the one given, or the free one picked for port 0
    log.info("serving %s (%d labels) on %s", args.model, len(model.labels), http_url(options.host, port))
    serve(app, sock, options)
    return EXIT_OK
