"""Ranking an index's windows against query vectors: exact (a matrix product over every window) or through the
ANN index with an exact re-score of its candidates; optionally one hit per recording and never the query's own."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from audioclf.corpus.ann import Ann
from audioclf.corpus.similarity import Combine, combined, scores
from audioclf.corpus.store import WindowRow
from audioclf.fileio import JSONObject

MAX_CANDIDATES = 20_000  # ANN candidates re-scored for one query, at most


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10
    per_recording: bool = False  # the best window of each recording: ten hits are ten recordings
    exclude_source: bool = False  # never return a window of the query's own recording(s)
    combine: Combine = Combine.MEAN  # several examples: one mean direction, or the best of them

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top k {self.top_k}: ask for at least one hit")


@dataclass(frozen=True)
class Hit:
    source: str
    start_s: float
    end_s: float
    score: float
    group: str
    window_id: int  # the window's id in the index (stable: ids are never reused)
    label: str | None = None
    transcript: str | None = None
    query: str | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {
            "source": self.source,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "score": round(self.score, 6),
            "group": self.group,
        }
        if self.label is not None:
            out["label"] = self.label
        if self.transcript is not None:
            out["transcript"] = self.transcript
        if self.query is not None:
            out["query"] = self.query
        return out

    @classmethod
    def of(cls, row: WindowRow, score: float, query: str | None) -> Hit:
        return cls(row.source, row.start_s, row.end_s, score, row.group, row.id, row.label, row.transcript, query)


@dataclass(frozen=True)
class Ranked:
    window_ids: np.ndarray
    scores: np.ndarray


def rank_exact(
    ids: np.ndarray,
    recordings: np.ndarray,
    prepared: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray | None,
    options: SearchOptions,
    excluded: Collection[int] = (),
) -> Ranked:
    s = scores(prepared, positives, negatives, options.combine)
    return top_hits(ids, recordings, s, options, excluded)


def rank_ann(
    ann: Ann,
    recordings_of: Callable[[np.ndarray], np.ndarray],
    positives: np.ndarray,
    negatives: np.ndarray | None,
    options: SearchOptions,
    excluded: Collection[int] = (),
    windows_per_recording: float = 1.0,
) -> Ranked:
    """Candidates from the HNSW graph (for each query direction), re-scored exactly with every example and
    negative; widened until ``top_k`` survive the per-recording and exclusion rules (or the cap is reached).
    One hit per recording asks for every window of twice ``top_k`` recordings: the ``top_k``-th recording's best
    window ranks about ``top_k * windows_per_recording`` among windows, below the windows of better recordings."""
    per = max(1.0, windows_per_recording) if options.per_recording else 1.0
    want = min(MAX_CANDIDATES, int(options.top_k * per * 2) + (8 * options.top_k if excluded else 0))
    while True:
        directions = combined(positives, options.combine)
        cand = np.unique(np.concatenate([ann.search(d, want) for d in directions]))
        vectors = ann.vectors(cand)
        s = scores(vectors, positives, negatives, options.combine)
        ranked = top_hits(cand, recordings_of(cand), s, options, excluded)
        exhausted = want >= len(ann)
        if len(ranked.window_ids) >= options.top_k or want >= MAX_CANDIDATES or exhausted:
            return ranked
        want *= 4


def top_hits(
    ids: np.ndarray, recordings: np.ndarray, s: np.ndarray, options: SearchOptions, excluded: Collection[int] = ()
) -> Ranked:
    """The ``top_k`` best windows by score ``s`` (per recording: the best window of each; ties: the earlier
    window). Only the best few are sorted (``argpartition``), widened until ``top_k`` survive the rules."""
    s = np.asarray(s, dtype=np.float32)
    if excluded:
        s = np.where(np.isin(recordings, np.fromiter(excluded, dtype=np.int64)), -np.inf, s)
    n, want = len(s), options.top_k
    m = min(n, want * 4 if options.per_recording else want)
    while True:
        cand = np.argpartition(-s, m - 1)[:m] if m < n else np.arange(n)
        order = cand[np.lexsort((cand, -s[cand]))]
        order = order[np.isfinite(s[order])]
        if options.per_recording:
            _, first = np.unique(recordings[order], return_index=True)
            order = order[np.sort(first)]
        if len(order) >= want or m >= n:
            order = order[:want]
            return Ranked(ids[order], s[order])
        m = min(n, m * 4)
