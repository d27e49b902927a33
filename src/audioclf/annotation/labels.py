"""``Labels``: every answer a reviewer gives, kept durably, and the manifest (``labels.csv``) made of them.

The answers live in an append-only SQLite log beside the manifest (``labels.answers.sqlite`` for
``labels.csv``), in WAL mode with ``synchronous=FULL``: an answer is on disk before it is acknowledged, so a
closed tab, a refresh or kill -9 loses none, and two reviewers write without losing either's answers. An answer
is a label, "not this label", "none of them" or a skip; an undo is appended too (it names the answer it takes
back). The manifest (``path,label,start,end,group``, what ``train`` and ``evaluate`` read) is rewritten
atomically from the log after every answer. Leases hand each window to one reviewer at a time.

A labels file is single-label (a window's latest label replaces the one before) or multi-label (a window holds
every label answered for it until a "not" or "none" takes it away; its manifest cell is ``a;b``), chosen when the
file is created and kept in the log.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from audioclf.corpus.card import CorpusError
from audioclf.corpus.store import WindowRow
from audioclf.fileio import write_csv_atomic
from audioclf.io.label_sets import join_labels

MANIFEST_COLUMNS = ["path", "label", "start", "end", "group"]
LEASE_S = 600.0  # a window handed to a reviewer is not handed to another for this long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers(
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    annotator TEXT NOT NULL,
    kind TEXT NOT NULL,
    window INTEGER,
    label TEXT,
    source TEXT,
    start_s REAL,
    end_s REAL,
    grp TEXT,
    origin TEXT,
    undoes INTEGER
);
CREATE INDEX IF NOT EXISTS answers_undone ON answers(undoes) WHERE undoes IS NOT NULL;
CREATE TABLE IF NOT EXISTS leases(window INTEGER PRIMARY KEY, annotator TEXT NOT NULL, until REAL NOT NULL);
"""


class Kind(enum.StrEnum):
    LABEL = "label"  # the window is an example of ``label``
    NOT = "not"  # the window is not ``label`` (a negative for it)
    NONE = "none"  # none of the labels (a negative for all)
    SKIP = "skip"  # seen, not answered
    UNDO = "undo"  # takes back the answer ``undoes``


class Origin(enum.StrEnum):
    SEARCH = "search"
    SUGGESTION = "suggestion"
    RANDOM = "random"
    MODEL = "model"  # a trained model's predictions, to correct
    OTHER = "other"


@dataclass(frozen=True)
class Answer:
    id: int
    at: float
    annotator: str
    kind: Kind
    window: int
    label: str | None
    source: str
    start_s: float
    end_s: float
    group: str
    origin: Origin


class Mode(enum.StrEnum):
    SINGLE = "single"  # one label per window: the latest answer stands
    MULTI = "multi"  # a set of labels per window


@dataclass(frozen=True)
class Standing:
    """What a window is, once every standing answer about it is replayed in order."""

    window: int
    labels: frozenset[str]  # the labels it is (at most one in a single-label file)
    nots: frozenset[str]  # the labels it was said not to be
    none: bool  # answered "none of them" (and no label since)
    last: Answer  # the latest standing answer about it (where it is: source, times, group)

    @property
    def answered(self) -> bool:
        """Labelled or "none": a training example for the quick model (a skip is not)."""
        return bool(self.labels) or self.none


def log_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.stem + ".answers.sqlite")


class Labels:
    def __init__(self, manifest: str | Path, index_id: str, mode: Mode | str | None = None) -> None:
        """Open (or create) the labels of the index ``index_id``; ``mode`` is fixed when the file is created
        (single-label when not given) and checked when given later."""
        self.manifest = Path(manifest)
        self.path = log_path(self.manifest)
        try:
            self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self.mode = self._bind(index_id, None if mode is None else Mode(mode))
            self._standing: dict[int, Standing] = {}
            self._upto = 0  # the last answer ``_standing`` has replayed
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"{self.path}: not a readable labels log ({exc}); move it away or use another") from exc

    def _bind(self, index_id: str, mode: Mode | None) -> Mode:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if "index" not in meta:
                self._db.execute("INSERT INTO meta VALUES ('index', ?)", (index_id,))
            elif meta["index"] != index_id:
                raise CorpusError(
                    f"{self.manifest}: these labels are of another index (id {meta['index'][:12]}, not "
                    f"{index_id[:12]}); give the index they were made on, or a new labels file"
                )
            kept = Mode(meta.get("mode", Mode.SINGLE)) if "index" in meta else (mode or Mode.SINGLE)
            if mode is not None and mode is not kept:
                raise CorpusError(f"{self.manifest}: these labels are {kept}-label, not {mode}; use a new labels file")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('mode', ?)", (str(kept),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return kept

    def close(self) -> None:
        self._db.close()

    def add(
        self,
        row: WindowRow,
        kind: Kind | str,
        label: str | None = None,
        *,
        annotator: str = "",
        origin: Origin | str = Origin.OTHER,
    ) -> Answer:
        """Append one answer about a window (durable when this returns) and rewrite the manifest."""
        kind, origin = Kind(kind), Origin(origin)
        if kind in (Kind.LABEL, Kind.NOT) and not (label and label.strip()):
            raise CorpusError(f"a {kind} answer needs a label")
        if kind not in (Kind.LABEL, Kind.NOT):
            label = None
        values = (time.time(), annotator, str(kind), row.id, label, row.source, row.start_s, row.end_s, row.group)
        cur = self._db.execute(
            "INSERT INTO answers(at, annotator, kind, window, label, source, start_s, end_s, grp, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, str(origin)),
        )
        self._db.execute("DELETE FROM leases WHERE window = ?", (row.id,))
        self.write_manifest()
        answer_id = int(cur.lastrowid or 0)
        return Answer(answer_id, values[0], annotator, kind, row.id, label, *_where(row), origin)

    def undo(self, annotator: str = "") -> Answer | None:
        """Take back ``annotator``'s latest answer not yet taken back (None when there is none)."""
        last = next((a for a in reversed(self.answers()) if a.annotator == annotator), None)
        if last is None:
            return None
        self._db.execute(
            "INSERT INTO answers(at, annotator, kind, window, undoes) VALUES (?, ?, ?, ?, ?)",
            (time.time(), annotator, str(Kind.UNDO), last.window, last.id),
        )
        self.write_manifest()
        return last

    def answers(self) -> list[Answer]:
        """Every answer still standing (undone ones left out), oldest first."""
        return self._answers("kind != 'undo' AND NOT EXISTS (SELECT 1 FROM answers u WHERE u.undoes = a.id)")

    def _answers(self, where: str, after: int = 0) -> list[Answer]:
        rows = self._db.execute(
            "SELECT id, at, annotator, kind, window, label, source, start_s, end_s, grp, origin FROM answers a "
            f"WHERE id > ? AND {where} ORDER BY id",
            (after,),
        ).fetchall()
        return [Answer(r[0], r[1], r[2], Kind(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], Origin(r[10])) for r in rows]

    def standing(self) -> dict[int, Standing]:
        """Every answered window, its answers replayed in order: a label adds to the window's labels (replaces
        them in a single-label file), "not" takes one away, "none" clears them; a skip alone changes nothing.
        Kept between calls and brought up to date with the answers appended since (by anyone); an undo since
        replays everything."""
        (last,) = self._db.execute("SELECT coalesce(max(id), 0) FROM answers").fetchone()
        if last == self._upto:
            return self._standing
        undo = "SELECT count(*) FROM answers WHERE id > ? AND kind = 'undo'"
        if self._db.execute(undo, (self._upto,)).fetchone()[0]:
            self._standing, self._upto = {}, 0
        fresh = self.answers() if not self._upto else self._answers("kind != 'undo'", self._upto)
        for a in fresh:
            self._standing[a.window] = self._replay(self._standing.get(a.window), a)
        self._upto = last
        return self._standing

    def _replay(self, was: Standing | None, a: Answer) -> Standing:
        labels, nots, none = (was.labels, was.nots, was.none) if was else (frozenset(), frozenset(), False)
        if a.kind is Kind.LABEL and a.label:
            labels = frozenset({a.label}) | (labels if self.mode is Mode.MULTI else frozenset())
            nots, none = nots - {a.label}, False
        elif a.kind is Kind.NOT and a.label:
            labels, nots = labels - {a.label}, nots | {a.label}
        elif a.kind is Kind.NONE:
            labels, none = frozenset(), True
        return Standing(a.window, labels, nots, none, a)

    def negatives(self) -> dict[int, set[str]]:
        """Per window, the labels it stands said not to be (a later answer with the label takes one back)."""
        return {w: set(s.nots) for w, s in self.standing().items() if s.nots}

    def seen(self) -> set[int]:
        """Windows with any standing answer: never suggested again."""
        return set(self.standing())

    def counts(self) -> Counter[str]:
        """Windows per label (and ``none``), as the manifest and the quick model see them."""
        counts: Counter[str] = Counter()
        for s in self.standing().values():
            counts.update(s.labels)
            counts.update([str(Kind.NONE)] if s.none else [])
        return counts

    def labels(self) -> list[str]:
        return sorted({label for s in self.standing().values() for label in s.labels})

    def write_manifest(self) -> None:
        rows = [_manifest_row(s) for s in sorted(self.standing().values(), key=lambda s: s.last.id) if s.labels]
        write_csv_atomic(self.manifest, MANIFEST_COLUMNS, rows)

    def lease(self, windows: Iterable[int], annotator: str, seconds: float = LEASE_S) -> list[int]:
        """Claim the windows no other reviewer holds (in the order given); returns those now held."""
        now, held = time.time(), []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for w in windows:
                row = self._db.execute("SELECT annotator, until FROM leases WHERE window = ?", (w,)).fetchone()
                if row is None or row[0] == annotator or row[1] < now:
                    self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (w, annotator, now + seconds))
                    held.append(w)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return held

    def leased_by_others(self, annotator: str) -> set[int]:
        rows = self._db.execute(
            "SELECT window FROM leases WHERE annotator != ? AND until >= ?", (annotator, time.time())
        )
        return {w for (w,) in rows}


def _manifest_row(window: Standing) -> dict[str, str]:
    a = window.last
    where = {"path": a.source, "start": f"{a.start_s:.3f}", "end": f"{a.end_s:.3f}", "group": a.group}
    return {**where, "label": join_labels(window.labels)}


def _where(row: WindowRow) -> tuple[str, float, float, str]:
    return row.source, row.start_s, row.end_s, row.group
