"""The corpus index behind ``/v1/search``: searches, each hit's window id, and the audio of one window, all run
on worker threads (``Lane``), never on the event loop.

Searches run one at a time on the search lane's one thread: the index builds its arrays and loads its encoders
on first use, and the store's connection is not shared. The audio lane reads windows through a connection of
its own (SQLite in WAL mode: readers never wait for each other), so listening to hits never waits for a search.
"""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Example, Index, Query
from audioclf.corpus.search import Hit, SearchOptions
from audioclf.corpus.store import Store
from audioclf.errors import AudioclfError, DecodeError
from audioclf.fileio import JSONObject
from audioclf.io.audio import SAMPLE_RATE_HZ, iter_samples, load_audio
from audioclf.serve.batcher import QueueFull

T = TypeVar("T")
CONTEXT_S = 1.0  # a hit's audio: its window and this much on either side
AUDIO_ROUTE = "/v1/search/audio"


class NotAudio(AudioclfError):
    """An uploaded example that does not decode as audio."""


class NoTranscripts(AudioclfError):
    """A search by words in an index built without transcripts."""


class NoSuchWindow(AudioclfError):
    """A window id the index does not hold, or whose recording cannot be read here any more."""


class Lane:
    """A few worker threads and a bounded number of jobs waiting for them: past it, ``QueueFull``."""

    def __init__(self, name: str, workers: int, max_waiting: int, on_reject: Callable[[], None]) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + max_waiting)
        self._name, self._on_reject = name, on_reject

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        if not self._slots.acquire(blocking=False):
            self._on_reject()
            raise QueueFull(f"the server is busy: too many {self._name} requests are waiting; retry in a moment")
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())  # also when cancelled before it ran
        return future

    def close(self) -> None:
        """Finish every accepted job, then stop."""
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class ServedHit:
    window_id: int
    hit: Hit

    def to_dict(self) -> JSONObject:
        return {
            **self.hit.to_dict(),
            "id": self.window_id,
            "audio": f"{AUDIO_ROUTE}/{self.window_id}",
            "audio_from_s": round(clip_start(self.hit.start_s), 3),  # where the audio's first sample is
        }


def clip_start(start_s: float) -> float:
    return max(0.0, start_s - CONTEXT_S)


class CorpusIndex:
    def __init__(self, index: Index) -> None:
        self.index = index
        self._reader = Store(index.folder)  # the audio lane's own connection
        self._reader_lock = threading.Lock()

    def close(self) -> None:
        self._reader.close()
        self.index.close()

    def summary(self) -> JSONObject:
        with self._reader_lock:
            n_recordings, n_windows = self._reader.counts()
        card = self.index.card
        return {
            "name": self.index.folder.name,
            "encoder": card.encoder,
            "recordings": n_recordings,
            "windows": n_windows,
            "window_s": card.windows.window_s,
            "hop_s": card.windows.hop_s,
            "transcripts": card.text is not None,
        }

    def search_words(self, text: str, options: SearchOptions) -> list[ServedHit]:
        if self.index.card.text is None:
            try:
                self.index.text_encoder  # noqa: B018 - raises the library's own message
            except CorpusError as exc:  # named by the index's folder name, not its path on this server
                raise NoTranscripts(str(exc).replace(str(self.index.folder), self.index.folder.name)) from None
        return self._search(Query(text=text), options)

    def search_clip(
        self, path: Path, start_s: float | None, end_s: float | None, options: SearchOptions
    ) -> list[ServedHit]:
        try:
            next(iter_samples(path))  # the first chunk only: is it audio at all
        except DecodeError as exc:
            raise NotAudio(str(exc)) from None
        return self._search(Query(examples=(Example(str(path), start_s, end_s),)), options)

    def _search(self, query: Query, options: SearchOptions) -> list[ServedHit]:
        return [ServedHit(h.window_id, h) for h in self.index.search(query, options)]

    def clip(self, window_id: int) -> bytes:
        """The window and ``CONTEXT_S`` on either side, as a 16-bit WAV."""
        return wav_bytes(self.clip_samples(window_id).samples)

    def clip_samples(self, window_id: int) -> Clip:
        """The window and ``CONTEXT_S`` on either side, decoded, and where the window lies in them."""
        with self._reader_lock:
            where = self._reader.window_audio(window_id)
        if where is None:
            raise NoSuchWindow(f"window {window_id}: not in this index; use the ids /v1/search answers with")
        if not Path(where.file).is_file():
            name = Path(where.file).name
            raise NoSuchWindow(f"window {window_id}: its recording {name} is no longer where it was indexed")
        start = max(0.0, clip_start(where.start_s + where.offset_s) - where.offset_s)
        try:
            samples = load_audio(where.file, start_s=start, end_s=where.end_s + CONTEXT_S)
        except DecodeError as exc:
            raise NoSuchWindow(f"window {window_id}: its recording cannot be decoded here ({exc})") from None
        return Clip(samples, where.start_s - start, where.end_s - start)


@dataclass(frozen=True)
class Clip:
    """A window's audio with its context: the window is ``[window_from_s, window_to_s)`` of ``samples``."""

    samples: np.ndarray
    window_from_s: float
    window_to_s: float


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit mono WAV at the decoding rate: what every browser plays."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()
