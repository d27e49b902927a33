"""The tool's own error types: each carries a one-line message naming the item and what to do."""

from __future__ import annotations


class AudioclfError(Exception):
    """Base class for every error the tool reports to a user as one line.

    The message states the facts and what to change in plain words; ``option``, when set, names the setting that
    changes it by its Python name (``force``, ``test_size``, ``cache_dir``, …), so that the command line can point
    to its flag and the Python API to its keyword argument (``cli/errors.py``)."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class ManifestError(AudioclfError):
    """A manifest (or one of its rows) is malformed."""


class DecodeError(AudioclfError):
    """An audio file cannot be read or decoded."""


class EncoderError(AudioclfError):
    """An encoder cannot be loaded or run."""


class ModelError(AudioclfError):
    """A trained model directory is missing, incomplete or incompatible."""


class TrainingError(AudioclfError):
    """Training cannot proceed with the data given (e.g. too few labels or groups)."""


class CacheError(AudioclfError):
    """The cache folder cannot be written (disk full, read-only, no permission)."""


class RunStopped(Exception):
    """A caller asked a long run to stop (e.g. every request waiting for it gave up); nothing is half-written."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first line, at most ``limit`` characters, or its type name when it has no message: what
    goes inside the parentheses of a one-line error."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines and lines[0] else type(exc).__name__
