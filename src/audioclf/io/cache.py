"""Embeddings on disk, keyed by audio content hash + encoder identity + window settings; atomic, no pickle."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from audioclf.errors import CacheError
from audioclf.fileio import FileLock, atomic_path, sharded_path
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions, check_regular, load_audio
from audioclf.io.manifest import Item

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_CHUNK_BYTES = 1 << 20


def default_cache_dir() -> Path:
    env = os.environ.get("AUDIOCLF_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("audioclf"))


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes: the same audio under another name or folder hits the same entry. Remembered
    per file identity and change time within a process, so the stages of one run hash each file once."""
    st = os.stat(path)
    check_regular(path, st)  # hashing a FIFO would block, /dev/zero would never end
    return _file_digest(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=1 << 16)
def _file_digest(path: str, *identity: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Embedded:
    """Pooled embeddings of every window of one recording."""

    embeddings: np.ndarray  # [n_windows, n_layers, dim] float32
    starts_s: np.ndarray  # [n_windows] float64
    durations_s: np.ndarray  # [n_windows] float64
    n_copies: int = 0  # the last windows that are training copies (fitting.context), not the recording's own

    def __post_init__(self) -> None:
        n = len(self.embeddings)
        if self.embeddings.ndim != 3 or len(self.starts_s) != n or len(self.durations_s) != n or n == 0:
            raise ValueError("inconsistent embedding entry")

    @property
    def duration_s(self) -> float:
        """From the first window's start to the last window's end (of the recording's own windows)."""
        own = len(self.starts_s) - self.n_copies
        return float(self.starts_s[own - 1] + self.durations_s[own - 1] - self.starts_s[0])

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.embeddings).all() and np.isfinite(self.starts_s).all())


class EmbeddingCache:
    """One ``.npz`` per (audio, encoder, window settings) under ``root/embeddings``."""

    def __init__(self, root: Path, encoder_identity: str, windows: WindowOptions) -> None:
        self.root = Path(root)
        settings = {"format": CACHE_FORMAT, "encoder": encoder_identity, "pooling": "mean", **windows.as_dict()}
        salt = json.dumps(settings, sort_keys=True)
        self._salt = hashlib.sha256(salt.encode()).hexdigest()

    def path_for(self, audio_digest: str) -> Path:
        key = hashlib.sha256(f"{self._salt}:{audio_digest}".encode()).hexdigest()
        return sharded_path(self.root / "embeddings", key, ".npz")

    def get(self, audio_digest: str) -> Embedded | None:
        path = self.path_for(audio_digest)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                entry = Embedded(data["embeddings"], data["starts_s"], data["durations_s"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s); it will be recomputed", path, exc)
            return None
        if not entry.finite:  # written by an older version from NaN audio: never serve it
            log.warning("ignoring cache entry %s with NaN or infinite values; it will be recomputed", path)
            return None
        return entry

    def put(self, audio_digest: str, entry: Embedded) -> None:
        if not entry.finite:
            raise ValueError("refusing to cache NaN or infinite embeddings")
        path = self.path_for(audio_digest)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, embeddings=entry.embeddings, starts_s=entry.starts_s, durations_s=entry.durations_s)
        except OSError as exc:  # the whole run would fail the same way: stop with the reason
            raise unwritable(self.root, exc) from exc

    def lock_for(self, audio_digest: str) -> FileLock:
        """The lock a run holds while it computes this entry, so a second run sharing the cache waits for it."""
        name = self.path_for(audio_digest).stem
        return FileLock(sharded_path(self.root / "locks", name, ".lock"))


def unwritable(root: Path, exc: OSError) -> CacheError:
    """The one-line error for a cache folder that cannot be written (it would fail every item the same way)."""
    return CacheError(
        f"cannot write the cache at {root} ({exc.strerror or exc}); free some space or use a writable cache folder",
        option="cache_dir",
    )


def content_key(item: Item) -> str:
    """Cache key of an item's audio: the file's hash, plus its time range when it has one."""
    digest = file_digest(item.file)
    if item.start_s is None and item.end_s is None:
        return digest
    return f"{digest}@{item.start_s or 0.0}-{item.end_s}"


class AudioCache:
    """Decoded mono float32 waveforms (16 kHz unless asked) as ``.npy`` files, memory-mapped when read."""

    def __init__(self, root: Path, max_duration_s: float | None = None, rate: int = SAMPLE_RATE_HZ) -> None:
        self.root = Path(root) / "audio"
        self._max = max_duration_s
        self.rate = rate  # part of every key: a 48 kHz waveform never stands in for a 16 kHz one

    def load(self, item: Item) -> np.ndarray:
        key = hashlib.sha256(f"{content_key(item)}|{self.rate}|{self._max}".encode()).hexdigest()
        path = sharded_path(self.root, key, ".npy")
        if path.exists():
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable cached audio %s (%s)", path, exc)
        audio = load_audio(item.file, self._max, item.start_s or 0.0, item.end_s, self.rate)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, audio, allow_pickle=False)
        return np.load(path, mmap_mode="r", allow_pickle=False)
