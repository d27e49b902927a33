"""The windows of an index in SQLite: one row per recording and per window, vectors as float32 blobs.

SQLite in WAL mode with ``synchronous=FULL`` is the source of truth: a build commits each batch of recordings
in one transaction, so a killed build loses at most the batch in flight (and its embeddings are in the cache).
The ANN index (``ann.py``) is derived from these rows and can always be rebuilt from them.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.corpus.card import CorpusError

DB_NAME = "windows.sqlite"
PAGE_BYTES = 16_384  # the file is 1.15x its vectors at this size, 2x at SQLite's default 4 kB (bench/index_scale.py)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings(
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,
    source TEXT NOT NULL,
    grp TEXT NOT NULL,
    label TEXT,
    local TEXT,
    offset_s REAL NOT NULL,
    duration_s REAL NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS windows(
    id INTEGER PRIMARY KEY,
    recording INTEGER NOT NULL REFERENCES recordings(id),
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    vector BLOB NOT NULL,
    transcript TEXT,
    text_vector BLOB
);
CREATE INDEX IF NOT EXISTS windows_by_recording ON windows(recording);
CREATE TABLE IF NOT EXISTS failures(key TEXT PRIMARY KEY, source TEXT NOT NULL, row TEXT, reason TEXT, at REAL);
"""


def recording_key(source: str, start_s: float | None, end_s: float | None) -> str:
    """Which recording a manifest row names: its source and time range (a second build skips it by this)."""
    return hashlib.sha256(f"{source}|{start_s}|{end_s}".encode()).hexdigest()


@dataclass(frozen=True)
class NewRecording:
    key: str
    source: str
    group: str
    label: str | None
    starts_s: np.ndarray  # [n] seconds in the source (for a URL: in the video)
    ends_s: np.ndarray
    vectors: np.ndarray  # [n, dim] float32
    transcripts: Sequence[str] | None = None
    text_vectors: np.ndarray | None = None  # [n, text dim]
    local: str | None = None  # for a URL: the downloaded file the windows were cut from
    offset_s: float = 0.0  # seconds of the source before that file's first sample (a range download)


@dataclass(frozen=True)
class WindowRow:
    id: int
    recording: int
    source: str
    group: str
    label: str | None
    start_s: float
    end_s: float
    transcript: str | None


@dataclass(frozen=True)
class WindowAudio:
    """Where a window's audio can be decoded on this machine: a file, and the window's times in that file."""

    file: str
    start_s: float
    end_s: float
    offset_s: float  # seconds of the source before the file's first sample


@dataclass(frozen=True)
class FailureRow:
    source: str
    row: str
    reason: str


class Store:
    def __init__(self, folder: Path, *, create: bool = False) -> None:
        self.path = Path(folder) / DB_NAME
        if not create and not self.path.is_file():
            raise CorpusError(f"{folder}: no index here ({DB_NAME} is missing); build one first")
        new = not self.path.exists()
        try:
            self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            if new:  # before the first table: a 512-value window (2 kB) fits 7 to a page, not 1 to a 4 kB one
                self._db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if create:
                self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM windows").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"{self.path}: not a readable index ({exc}); rebuild it into a new folder") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:  # commits on success, rolls back on any error
            yield self._db

    def known_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM recordings")}

    def add(self, recordings: Sequence[NewRecording]) -> tuple[int, int]:
        """Store recordings (one transaction); ones already stored are left as they are. Returns how many
        recordings and windows were added."""
        added = n_recordings = 0
        now = time.time()
        with self._transaction() as db:
            for rec in recordings:
                cur = db.execute(
                    "INSERT OR IGNORE INTO recordings(key, source, grp, label, local, offset_s, duration_s, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.key,
                        rec.source,
                        rec.group,
                        rec.label,
                        rec.local,
                        rec.offset_s,
                        float(rec.ends_s.max() - rec.starts_s.min()),
                        now,
                    ),
                )
                if cur.rowcount == 0:
                    continue
                db.execute("DELETE FROM failures WHERE key = ?", (rec.key,))
                db.executemany(
                    "INSERT INTO windows(recording, start_s, end_s, vector, transcript, text_vector) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    _window_rows(cur.lastrowid, rec),
                )
                added += len(rec.vectors)
                n_recordings += 1
        return n_recordings, added

    def relabel(self, labels: Sequence[tuple[str, str]]) -> None:
        """Give recordings already stored the labels a later manifest gives them (keys not stored are ignored)."""
        with self._transaction() as db:
            db.executemany("UPDATE recordings SET label = ? WHERE key = ?", [(label, key) for key, label in labels])

    def fail(self, failures: Sequence[tuple[str, FailureRow]]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO failures(key, source, row, reason, at) VALUES (?, ?, ?, ?, ?)",
                [(key, f.source, f.row, f.reason, time.time()) for key, f in failures],
            )

    def failures(self) -> list[FailureRow]:
        rows = self._db.execute("SELECT source, row, reason FROM failures ORDER BY at")
        return [FailureRow(s, r or "", why or "") for s, r, why in rows]

    def counts(self) -> tuple[int, int]:
        """(recordings, windows)."""
        (n_rec,) = self._db.execute("SELECT count(*) FROM recordings").fetchone()
        (n_win,) = self._db.execute("SELECT count(*) FROM windows").fetchone()
        return int(n_rec), int(n_win)

    def last_window_id(self) -> int:
        (last,) = self._db.execute("SELECT coalesce(max(id), 0) FROM windows").fetchone()
        return int(last)

    def vectors(
        self, dim: int, after_id: int = 0, column: str = "vector", limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(window ids, [n, dim] float32) of the windows after ``after_id`` (at most ``limit``), in id order; read
        in chunks into one preallocated array (a million windows take their 2 GB once, not twice)."""
        if column not in ("vector", "text_vector"):
            raise ValueError(column)
        (n,) = self._db.execute("SELECT count(*) FROM windows WHERE id > ?", (after_id,)).fetchone()
        n = n if limit is None else min(n, limit)
        ids = np.empty(n, dtype=np.int64)
        out = np.zeros((n, dim), dtype=np.float32)
        query = f"SELECT id, {column} FROM windows WHERE id > ? ORDER BY id LIMIT ?"
        cursor = self._db.execute(query, (after_id, n))
        k = 0
        while k < n and (rows := cursor.fetchmany(4096)):
            rows = rows[: n - k]  # windows added by another process since the count are left for the next read
            ids[k : k + len(rows)] = [r[0] for r in rows]
            blob = b"".join(r[1] or bytes(4 * dim) for r in rows)  # a window without text: a zero text vector
            out[k : k + len(rows)] = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim)
            k += len(rows)
        return ids[:k], out[:k]

    def vectors_of(self, window_ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """The stored vectors of the windows named (those the store has)."""
        out: dict[int, np.ndarray] = {}
        for chunk in _chunks(list(window_ids)):
            marks = ",".join("?" * len(chunk))
            for i, blob in self._db.execute(f"SELECT id, vector FROM windows WHERE id IN ({marks})", chunk):
                out[int(i)] = np.frombuffer(blob, dtype=np.float32).reshape(dim)
        return out

    def window_recordings(self) -> tuple[np.ndarray, np.ndarray]:
        """(window ids, their recording ids), in id order."""
        rows = self._db.execute("SELECT id, recording FROM windows ORDER BY id").fetchall()
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def windows_saying(self, words: str) -> set[int]:
        """Windows whose transcript contains ``words`` (case-insensitive, as written)."""
        escaped = words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = "SELECT id FROM windows WHERE transcript LIKE ? ESCAPE '\\'"
        return {i for (i,) in self._db.execute(query, (f"%{escaped}%",))}

    def groups_of_recordings(self) -> dict[int, str]:
        return dict(self._db.execute("SELECT id, grp FROM recordings").fetchall())

    def recordings_of(self, source: str) -> set[int]:
        return {r for (r,) in self._db.execute("SELECT id FROM recordings WHERE source = ?", (source,))}

    def recording_of(self, window_ids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(list(window_ids)):
            marks = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT id, recording FROM windows WHERE id IN ({marks})", chunk).fetchall())
        return out

    def window_audio(self, window_id: int) -> WindowAudio | None:
        """The file to decode for one window (a URL's downloaded file), or None for an id the store lacks."""
        row = self._db.execute(
            "SELECT r.source, r.local, r.offset_s, w.start_s, w.end_s FROM windows w "
            "JOIN recordings r ON r.id = w.recording WHERE w.id = ?",
            (int(window_id),),
        ).fetchone()
        if row is None:
            return None
        source, local, offset, start, end = row
        return WindowAudio(local or source, start - offset, end - offset, offset)

    def rows(self, window_ids: Sequence[int]) -> dict[int, WindowRow]:
        out: dict[int, WindowRow] = {}
        for chunk in _chunks(list(window_ids)):
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT w.id, w.recording, r.source, r.grp, r.label, w.start_s, w.end_s, w.transcript "
                f"FROM windows w JOIN recordings r ON r.id = w.recording WHERE w.id IN ({marks})"
            )
            for row in self._db.execute(query, chunk):
                out[row[0]] = WindowRow(*row)
        return out


def _window_rows(recording: int | None, rec: NewRecording) -> Iterator[tuple[object, ...]]:
    vectors = np.ascontiguousarray(rec.vectors, dtype=np.float32)
    for i in range(len(vectors)):
        text = None if rec.transcripts is None else rec.transcripts[i]
        tv = None if rec.text_vectors is None else np.ascontiguousarray(rec.text_vectors[i], np.float32).tobytes()
        yield recording, float(rec.starts_s[i]), float(rec.ends_s[i]), vectors[i].tobytes(), text, tv


def _chunks(ids: list[int], size: int = 900) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
