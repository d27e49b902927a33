"""Items -> per-window embeddings, through the cache; a bad file is reported and skipped, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audioclf.encoders.loader import Encoder, sample_rate_of
from audioclf.errors import DecodeError, EncoderError, RunStopped, first_line
from audioclf.fileio import FileLock, write_csv_atomic
from audioclf.io.audio import WindowOptions, iter_windows
from audioclf.io.cache import Embedded, EmbeddingCache, content_key, unwritable
from audioclf.io.download import FetchError, FetchOptions, fetch_all
from audioclf.io.manifest import Item
from audioclf.speech.transcribe import Transcript, TranscriptCache

log = logging.getLogger(__name__)

ENCODER_FAILURES = (EncoderError, RuntimeError, ValueError)  # what an encoder raises on one bad input
WINDOWS_PER_CALL = 16  # windows (of one long recording or of many short ones) sent to the encoder at once


@dataclass(frozen=True)
class Failure:
    item: Item
    reason: str


@dataclass
class EmbedResult:
    embedded: list[tuple[Item, Embedded]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    n_cached: int = 0
    n_downloaded: int = 0
    audio_s: float = 0.0  # seconds of audio newly embedded
    seconds: float = 0.0
    n_embedded: int | None = None  # set when the entries stayed in the cache (a Ray run) instead of `embedded`

    def summary(self) -> str:
        ok = self.n_embedded if self.n_embedded is not None else len(self.embedded)
        rate = f", {self.audio_s / self.seconds:.0f}x realtime" if self.audio_s and self.seconds else ""
        fetched = f", {self.n_downloaded} downloaded" if self.n_downloaded else ""
        return f"embedded {ok} recordings ({self.n_cached} from cache{fetched}{rate}), {len(self.failures)} failed"


@dataclass
class _Open:
    """A recording being embedded: its windows may share encoder calls with other recordings'."""

    position: tuple[int, int]  # (manifest row, playlist entry): the order results are returned in
    item: Item
    key: str
    lock: FileLock  # held from the first window until the entry is in the cache (or the item failed)
    starts: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    rows: dict[int, np.ndarray] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)  # when the encoder transcribes in the same pass
    decoded: bool = False
    twins: list[tuple[tuple[int, int], Item]] = field(default_factory=list)  # same audio in other rows

    @property
    def complete(self) -> bool:
        return self.decoded and len(self.rows) == len(self.starts)


@dataclass
class _BatchingEmbedder:
    """Embeds items into ``result``: windows of consecutive recordings are batched into one encoder call (many
    short clips per forward pass), long recordings stream through in bounded batches, and each recording is
    written to the cache as soon as all its windows are done."""

    encoder: Encoder
    cache: EmbeddingCache
    windows: WindowOptions
    result: EmbedResult = field(default_factory=EmbedResult)
    done: list[tuple[tuple[int, int], Item, Embedded]] = field(default_factory=list)
    _queue: list[tuple[_Open, int, np.ndarray]] = field(default_factory=list)
    _open: list[_Open] = field(default_factory=list)
    _deferred: list[tuple[tuple[int, int], Item, FileLock]] = field(default_factory=list)
    transcripts: TranscriptCache | None = None  # where same-pass transcripts go (non-overlapping windows only)
    stop: Callable[[], bool] | None = None  # asked before each item and each encoder call: raise RunStopped

    @property
    def min_samples(self) -> int:
        return int(getattr(self.encoder, "min_samples", 1))

    @property
    def rate(self) -> int:
        """The sampling rate the encoder reads (16 kHz but for a few, as CLAP's 48 kHz): audio is decoded at it."""
        return sample_rate_of(self.encoder)

    def check(self) -> None:
        """Raise RunStopped when the caller asked to stop (between items and encoder calls: nothing half-done)."""
        if self.stop is not None and self.stop():
            raise RunStopped

    def release(self) -> None:
        """Give up every recording still open (their cache locks go; nothing of theirs was written)."""
        for rec in self._open:
            rec.lock.release()
        self._open, self._queue = [], []

    def add(self, position: tuple[int, int], item: Item, error: str | None = None) -> None:
        self.check()
        rec = None
        try:
            if error is not None:
                raise FetchError(error)
            key = content_key(item)
            if self._cached(position, item, key):
                return
            twin = next((r for r in self._open if r.key == key), None)
            if twin is not None:  # the same audio is already on its way: one computation serves both rows
                self.result.n_cached += 1
                twin.twins.append((position, item))
                return
            lock = self.cache.lock_for(key)
            if not self._try(lock):  # another run is computing it: come back to it at the end
                self._deferred.append((position, item, lock))
                return
            if self._cached(position, item, key):  # stored by another run between the first look and the lock
                lock.release()
                return
            rec = _Open(position, item, key, lock)
            self._open.append(rec)
            rate = self.rate
            for window in iter_windows(item.file, self.windows, item.start_s or 0.0, item.end_s, rate):
                if len(window.samples) < self.min_samples:
                    raise DecodeError(
                        f"{item.file}: only {len(window.samples) / rate:.3f} s of audio; this encoder "
                        f"needs at least {self.min_samples / rate:.3f} s (remove the file or pad it)"
                    )
                rec.starts.append(window.start_s)
                rec.durations.append(window.duration_s)
                self._queue.append((rec, len(rec.starts) - 1, window.samples))
                if len(self._queue) >= WINDOWS_PER_CALL:
                    self.flush()
            rec.decoded = True
        except (DecodeError, FetchError, OSError) as exc:
            self._fail(item, exc, rec)

    def _try(self, lock: FileLock) -> bool:
        try:
            return lock.acquire(blocking=False)
        except OSError as exc:  # the cache folder, not this item: stop the run with the reason
            raise unwritable(self.cache.root, exc) from exc

    def _cached(self, position: tuple[int, int], item: Item, key: str) -> bool:
        emb = self.cache.get(key)
        if emb is not None:
            self.result.n_cached += 1
            self.done.append((position, item, emb))
        return emb is not None

    def flush(self) -> None:
        """Embed every queued window, then store each recording that is now complete."""
        self.check()
        queue, self._queue = self._queue, []
        rows: list[np.ndarray | None] = []
        texts: list[str] | None = None
        try:
            rows = list(self.encoder.embed([samples for _, _, samples in queue])) if queue else []
            texts = getattr(self.encoder, "last_texts", None)
        except ENCODER_FAILURES:  # one odd recording must not sink the batch: retry one by one
            rows = self._embed_one_by_one(queue)
        for k, ((rec, i, _), row) in enumerate(zip(queue, rows, strict=True)):
            if row is not None:
                rec.rows[i] = row
            if texts is not None:
                rec.texts[i] = texts[k]
        for rec in [r for r in self._open if r.complete]:
            self._open.remove(rec)
            emb = Embedded(
                np.stack([rec.rows[i] for i in range(len(rec.starts))]),
                np.asarray(rec.starts),
                np.asarray(rec.durations),
            )
            if not emb.finite:  # finite audio in, NaN out: the encoder's fault on this input; never cached
                self._open.append(rec)  # _fail forgets it as an open recording
                self._fail(rec.item, DecodeError(f"{rec.item.file}: the encoder gave NaN or infinite values"), rec)
                continue
            try:
                self.cache.put(rec.key, emb)
                if self.transcripts is not None and len(rec.texts) == len(rec.starts):
                    said = " ".join(rec.texts[i] for i in range(len(rec.starts)) if rec.texts[i])
                    self.transcripts.put(rec.key, Transcript(said))
            finally:
                rec.lock.release()
            self.result.audio_s += float(emb.durations_s.sum())
            self.done += [(position, item, emb) for position, item in [(rec.position, rec.item), *rec.twins]]

    def finish(self) -> None:
        """Flush, then take up the items another run was computing: wait for it, then read (or compute) them."""
        self.flush()
        while self._deferred:
            deferred, self._deferred = self._deferred, []
            for position, item, lock in deferred:
                with lock:  # blocks until the other run has stored the entry (or given up on it)
                    pass
                self.add(position, item)
            self.flush()

    def _embed_one_by_one(self, queue: list[tuple[_Open, int, np.ndarray]]) -> list[np.ndarray | None]:
        rows: list[np.ndarray | None] = [None] * len(queue)
        for rec in list({id(rec): rec for rec, _, _ in queue}.values()):  # each recording once, in queue order
            mine = [k for k, (r, _, _) in enumerate(queue) if r is rec]
            try:
                for k, row in zip(mine, self.encoder.embed([queue[k][2] for k in mine]), strict=True):
                    rows[k] = row
            except ENCODER_FAILURES as exc:
                first = first_line(exc)
                self._fail(rec.item, DecodeError(f"{rec.item.file}: the encoder failed on it ({first})"), rec)
        return rows

    def _fail(self, item: Item, exc: Exception, rec: _Open | None) -> None:
        if rec is not None:  # forget its queued windows and its place among the open recordings
            rec.lock.release()
            self._queue = [q for q in self._queue if q[0] is not rec]
            self._open.remove(rec)
            for _, twin in rec.twins:
                self._fail(twin, exc, None)
        reason = _os_reason(item.file, exc) if isinstance(exc, OSError) else str(exc)
        log.warning("skipped %s: %s", item.where, reason)
        self.result.failures.append(Failure(item, reason))


def _os_reason(file: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{file}: file not found; fix the path or remove the row"
    if isinstance(exc, IsADirectoryError):
        return f"{file}: is a folder, not an audio file; list the files inside it instead"
    if isinstance(exc, PermissionError):
        return f"{file}: not readable ({exc.strerror}); fix its permissions"
    return f"{file}: {exc.strerror or exc}"


def embed_items(
    items: Sequence[Item],
    encoder: Encoder,
    cache: EmbeddingCache,
    windows: WindowOptions,
    *,
    fetch: FetchOptions | None = None,
    progress: bool = True,
    transcripts: TranscriptCache | None = None,
    stop: Callable[[], bool] | None = None,
) -> EmbedResult:
    """Embed ``items`` in manifest order (cached ones are read back; URLs are downloaded first, in parallel,
    and each is embedded as soon as it arrives), skipping and recording the ones that fail. ``stop`` is asked
    before each item and each encoder call; when it answers True the run ends with RunStopped."""
    started = time.perf_counter()
    embedder = _BatchingEmbedder(encoder, cache, windows, transcripts=transcripts, stop=stop)
    try:
        _embed_all(embedder, items, fetch, progress)
    except RunStopped:
        embedder.release()
        raise
    result = embedder.result
    result.embedded = [(item, emb) for _, item, emb in sorted(embedder.done, key=lambda d: d[0])]
    result.seconds = time.perf_counter() - started
    return result


def _embed_all(embedder: _BatchingEmbedder, items: Sequence[Item], fetch: FetchOptions | None, progress: bool) -> None:
    remote = [(row, item) for row, item in enumerate(items) if item.needs_fetch]
    with tqdm(total=len(items), desc="embedding", unit="file", disable=not progress, leave=False) as bar:
        if remote:
            for r in fetch_all([item for _, item in remote], fetch or FetchOptions(cache_dir=embedder.cache.root)):
                if r.entry > 0:
                    bar.total += 1
                embedder.result.n_downloaded += r.fresh
                embedder.add((remote[r.row][0], r.entry), r.item, r.error)
                bar.update()
        for row, item in enumerate(items):
            if not item.needs_fetch:
                embedder.add((row, 0), item)
                bar.update()
        embedder.finish()


def write_failures(failures: Sequence[Failure], path: Path) -> None:
    """failures.csv: source (file or URL), row, reason — one line per skipped item."""
    rows = [{"source": f.item.source, "row": f.item.where, "reason": f.reason} for f in failures]
    write_csv_atomic(path, ["source", "row", "reason"], rows)
