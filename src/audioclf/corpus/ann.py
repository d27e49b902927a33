"""The approximate (HNSW) index of a large corpus: usearch, over the prepared unit vectors, saved beside the store.

Below ``ANN_FROM_WINDOWS`` windows exact search is both exact and fast (a matrix product and a partial sort: 7 ms
per query at 100k windows and 15 ms at 200k on two cores, 94 ms at 1M; ``bench/index_scale.py``), so no ANN
index is built. Above it the HNSW index is built
from the store, extended by later builds and rebuilt when the statistics it was prepared with drift (the corpus
has doubled since). Its state (``ann.json``) says which windows it covers: a search uses it only when it covers
every window in the store, and otherwise searches exactly (never a silent partial answer).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.corpus.similarity import Similarity, VectorStats, prepare
from audioclf.corpus.store import Store
from audioclf.fileio import JSONObject, atomic_path, write_json_atomic

log = logging.getLogger(__name__)

ANN_FROM_WINDOWS = 200_000
ANN_NAME = "ann.usearch"
STATE_NAME = "ann.json"
CONNECTIVITY = 16
# Measured at 100k windows (bench/index_scale.py --tune): f16 storage and a build expansion of 64 build 4x faster
# than f32 / 128 (23 s vs 101 s) at the same recall@10 (1.000 plain; 0.97 one-per-recording at a search
# expansion of 256), on half the disk.
DTYPE = "f16"
EXPANSION_ADD = 64
EXPANSION_SEARCH = 256
BATCH = 50_000  # windows read from the store and added at once (bounded memory)


@dataclass(frozen=True)
class AnnState:
    covered_to: int  # the last window id in the ANN index
    n: int  # windows in it
    similarity: Similarity
    stats: VectorStats | None  # the statistics its vectors were prepared with
    stats_n: int  # windows those statistics came from

    def to_dict(self) -> JSONObject:
        return {
            "covered_to": self.covered_to,
            "n": self.n,
            "similarity": str(self.similarity),
            "stats": None if self.stats is None else self.stats.to_dict(),
            "stats_n": self.stats_n,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnState:
        stats = data.get("stats")
        return cls(
            int(data["covered_to"]),
            int(data["n"]),
            Similarity(data["similarity"]),
            None if stats is None else VectorStats.from_dict(stats),
            int(data["stats_n"]),
        )


def read_state(folder: Path) -> AnnState | None:
    try:
        return AnnState.from_dict(json.loads((folder / STATE_NAME).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); searching exactly until the next build rebuilds it", STATE_NAME, exc)
        return None


def update_ann(folder: Path, store: Store, dim: int, similarity: Similarity) -> bool:
    """Bring the ANN index up to date with the store when the store is large enough; True when one exists. The
    statistics a fresh graph is prepared with are taken from the whole store then (and only then)."""
    _, n_windows = store.counts()
    if n_windows < ANN_FROM_WINDOWS:
        return False
    state = read_state(folder)
    fresh = (
        state is None
        or not (folder / ANN_NAME).is_file()
        or state.similarity is not similarity
        # the statistics it was prepared with no longer describe the corpus (cosine uses none)
        or (similarity is not Similarity.COSINE and n_windows > 2 * state.stats_n)
    )
    if not fresh and state is not None and state.covered_to >= store.last_window_id():
        return True
    from usearch.index import Index

    index: Any
    if fresh or state is None:
        index = Index(ndim=dim, metric="ip", dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
        stats = None if similarity is Similarity.COSINE else VectorStats.of(store.vectors(dim)[1])
        after, use_stats, stats_n = 0, stats, n_windows
    else:
        index = Index.restore(str(folder / ANN_NAME))
        after, use_stats, stats_n = state.covered_to, state.stats, state.stats_n
    covered = after
    while True:
        ids, vectors = store.vectors(dim, after_id=covered, limit=BATCH)
        if not len(ids):
            break
        index.add(ids, prepare(vectors, similarity, use_stats), threads=os.cpu_count() or 1)
        covered = int(ids[-1])
    with atomic_path(folder / ANN_NAME) as tmp:
        index.save(str(tmp))
    write_json_atomic(folder / STATE_NAME, AnnState(covered, len(index), similarity, use_stats, stats_n).to_dict())
    return True


class Ann:
    """A read-only, memory-mapped view of the HNSW index."""

    def __init__(self, folder: Path, state: AnnState) -> None:
        from usearch.index import Index

        self.state = state
        index = Index.restore(str(folder / ANN_NAME), view=True)
        if index is None:
            raise OSError(f"{folder / ANN_NAME}: not a usearch index")
        self._index: Any = index  # usearch's stubs make ``expansion_search`` read-only; it is not

    def __len__(self) -> int:
        return len(self._index)

    def search(self, direction: np.ndarray, k: int) -> np.ndarray:
        """The ids of the (about) ``k`` windows nearest to one query direction."""
        k = min(k, len(self._index))
        self._index.expansion_search = max(EXPANSION_SEARCH, 2 * k)
        matches = self._index.search(np.asarray(direction, dtype=np.float32).reshape(-1), k)
        return np.asarray(matches.keys, dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The prepared vectors the index holds for ``ids``: [len(ids), dim]."""
        return np.vstack(self._index.get(ids)).astype(np.float32, copy=False)
