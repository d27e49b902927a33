"""The one table from library errors to what the command line says: a line, a hint naming the flag, an exit
code. The library's messages speak of settings by their Python names (``AudioclfError.option``); only this
module knows the flags."""

from __future__ import annotations

import errno

from audioclf.cli.options import EXIT_INTERNAL, EXIT_USER
from audioclf.errors import AudioclfError

INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

_OS_HINT = "check free space and that the folder is writable"
_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EACCES: "check the folder is writable by you",
    errno.EPERM: "check the folder is writable by you",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOENT: "check the path exists",
}

# AudioclfError.option -> the flag a user of the command line sets
FLAGS = {
    "cache_dir": "--cache-dir",
    "check": "--check",
    "features": "--features",
    "fold_column": "--fold-column",
    "folds": "--folds",
    "force": "--force",
    "include_training": "--include-training",
    "layer": "--layer",
    "manifest": "--manifest",
    "format": "--format",
    "min_confidence": "--min-confidence",
    "min_duration": "--min-duration",
    "max_upload": "--max-upload",
    "min_free": "--min-free",
    "out": "--out",
    "rate_limit": "--rate-limit",
    "ray": "--ray",
    "resume": "--resume",
    "similarity": "--similarity",
    "smooth": "--smooth",
    "strategy": "--strategy",
    "test_size": "--test-size",
    "token": "--token",
    "top_k": "--top-k",
    "text_encoder": "--text-encoder",
    "transcriber": "--transcriber",
    "window": "--window",
}


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line (without ``error:``) and the exit code for ``exc``; anything unexpected is a bug."""
    if isinstance(exc, AudioclfError):
        flag = FLAGS.get(exc.option or "")
        return (f"{exc} (see {flag})" if flag else str(exc)), EXIT_USER
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(exc, OSError):  # disk full, read-only or missing output folder: the environment, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}; {_OS_HINTS.get(exc.errno or 0, _OS_HINT)}", EXIT_USER
    return f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", EXIT_INTERNAL
