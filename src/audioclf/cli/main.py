"""Command line: a thin layer over the library; errors become one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from audioclf.cli.errors import BROKEN_PIPE, describe
from audioclf.cli.options import EXIT_INTERNAL
from audioclf.cli.parser import build_parser
from audioclf.io.cache import default_cache_dir

log = logging.getLogger("audioclf")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"{record.levelname.lower()}: {msg}" if record.levelno >= logging.WARNING else msg


def _setup_logging(quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    # transformers' warnings and its (and the hub's) progress bars stay quiet, without importing transformers
    # here (1 s of start-up): it reads the variable when an encoder first imports it
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    if "transformers" in sys.modules:  # already imported (by a caller of main): its settings were read then
        transformers = sys.modules["transformers"]
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.quiet, args.debug)
    if args.cache_dir is None:
        args.cache_dir = default_cache_dir()
    try:
        command = import_module(f"audioclf.cli.{args.command}")  # one module per command, imported when run
        return int(getattr(command, f"cmd_{args.command}")(args))
    except BrokenPipeError:  # the reader (e.g. `| head -1`) has what it wanted: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as exc:
        line, code = describe(exc)
        if args.debug and code == EXIT_INTERNAL:
            raise
        if args.debug:
            log.exception("failed")
        print(("" if isinstance(exc, KeyboardInterrupt) else "error: ") + line, file=sys.stderr)
        return code
