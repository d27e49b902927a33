"""Build or extend an index: embed every new recording's windows (through the embedding cache, the same windows
and encoder as ``train``) and commit them to the store in batches, then bring the ANN index up to date.

A recording already in the store is skipped before anything is read (its key is its source and time range), so
a second build of the same sources embeds nothing; a killed build resumes from its last committed batch, and the
batch in flight comes back from the embedding cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audioclf.corpus.ann import update_ann
from audioclf.corpus.card import CARD_NAME, CorpusError, IndexCard, write_card
from audioclf.corpus.similarity import DEFAULT_SIMILARITY, Similarity
from audioclf.corpus.store import FailureRow, NewRecording, Store, recording_key
from audioclf.corpus.text import WindowTexts
from audioclf.encoders.loader import Encoder
from audioclf.extraction.embed import EmbedResult, Failure, embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item

log = logging.getLogger(__name__)

BATCH_RECORDINGS = 32  # recordings embedded, then committed in one transaction


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, chosen and loaded at the boundary."""

    encoder: Encoder
    windows: WindowOptions
    layer: int
    cache_dir: Path
    similarity: Similarity = DEFAULT_SIMILARITY
    texts: WindowTexts | None = None
    fetch: FetchOptions | None = None
    progress: bool = True
    stop: Callable[[], bool] | None = None

    def card(self) -> IndexCard:
        text = None if self.texts is None else self.texts.side()
        return IndexCard(
            encoder=str(self.encoder.spec),
            encoder_identity=self.encoder.identity,
            layer=self.layer,
            n_layers=self.encoder.n_layers,
            dim=self.encoder.dim,
            windows=self.windows,
            similarity=self.similarity,
            text=text,
        )


@dataclass
class BuildSummary:
    out: Path
    n_new: int = 0  # recordings added by this build
    n_known: int = 0  # recordings skipped: already in the index
    n_windows_added: int = 0
    n_recordings: int = 0  # in the index after the build
    n_windows: int = 0
    failures: list[Failure] = field(default_factory=list)
    n_cached: int = 0  # recordings whose embeddings came from the cache
    embed_s: float = 0.0  # embedding (and transcribing) time
    store_s: float = 0.0  # the index's own work: commits and the ANN index
    seconds: float = 0.0
    ann: bool = False

    def line(self) -> str:
        ann = "; ANN index up to date" if self.ann else ""
        return (
            f"{self.out}: added {self.n_new} recordings ({self.n_windows_added} windows; {self.n_known} already "
            f"indexed, {self.n_cached} from the embedding cache), {len(self.failures)} failed; the index holds "
            f"{self.n_recordings} recordings, {self.n_windows} windows{ann}"
        )


def open_for_build(out: Path, card: IndexCard) -> Store:
    """The store at ``out``, created with ``card`` when new; an index built otherwise is refused."""
    card_path = out / CARD_NAME
    if card_path.is_file():
        existing = read_card(out)
        why = existing.same_build(card)
        if why is not None:
            raise CorpusError(f"{out}: cannot add to this index: {why}; build into a new folder", option="out")
        return Store(out, create=True)
    if out.exists() and any(out.iterdir()):
        raise CorpusError(f"{out}: exists and is not an index; choose a new or empty folder", option="out")
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out, create=True)
    write_card(out, card)
    return store


def read_card(folder: Path) -> IndexCard:
    path = folder / CARD_NAME
    try:
        return IndexCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CorpusError(f"{folder}: no index here ({CARD_NAME} is missing); build one first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: not a readable index card ({exc}); rebuild the index into a new folder") from exc


def build_index(items: Sequence[Item], out: Path, plan: BuildPlan) -> BuildSummary:
    started = time.perf_counter()
    card = plan.card()
    store = open_for_build(out, card)
    summary = BuildSummary(out)
    try:
        known = store.known_keys()
        unique = _unique(items)
        todo = [item for key, item in unique.items() if key not in known]
        summary.n_known = len(unique) - len(todo)
        store.relabel([(key, item.label) for key, item in unique.items() if item.label is not None])
        cache = EmbeddingCache(plan.cache_dir, plan.encoder.identity, plan.windows)
        with tqdm(total=len(todo), desc="indexing", unit="file", disable=not plan.progress, leave=False) as bar:
            for start in range(0, len(todo), BATCH_RECORDINGS):
                _batch(todo[start : start + BATCH_RECORDINGS], store, plan, cache, summary)
                bar.update(min(BATCH_RECORDINGS, len(todo) - start))
        t = time.perf_counter()
        summary.ann = update_ann(out, store, card.dim, card.similarity)
        summary.store_s += time.perf_counter() - t
        summary.n_recordings, summary.n_windows = store.counts()
    finally:
        store.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _batch(items: list[Item], store: Store, plan: BuildPlan, cache: EmbeddingCache, summary: BuildSummary) -> None:
    t = time.perf_counter()
    result = embed_items(items, plan.encoder, cache, plan.windows, fetch=plan.fetch, progress=False, stop=plan.stop)
    origin = {item.where: item for item in items}
    new = [_recording(origin, item, emb, plan) for item, emb in result.embedded]
    summary.embed_s += time.perf_counter() - t
    t = time.perf_counter()
    n_recordings, n_windows = store.add(new)
    summary.n_windows_added += n_windows
    store.fail([(_failure_key(origin, f), _failure_row(f)) for f in result.failures])
    summary.store_s += time.perf_counter() - t
    _count(summary, result, n_recordings)


def _count(summary: BuildSummary, result: EmbedResult, n_new: int) -> None:
    summary.n_new += n_new
    summary.n_cached += result.n_cached
    summary.failures += result.failures


def _unique(items: Sequence[Item]) -> dict[str, Item]:
    """One item per recording key (a source named twice, by a manifest and a folder, is indexed once; the first
    label given is kept), by key."""
    first: dict[str, Item] = {}
    for item in items:
        key = recording_key(item.source, item.start_s, item.end_s)
        if key not in first or (first[key].label is None and item.label is not None):
            first[key] = item if key not in first else replace(first[key], label=item.label)
    return first


def _origin(origin: dict[str, Item], item: Item) -> Item:
    """The manifest row an embedded item came from (a playlist's entries are ``<row>#<n>``)."""
    return origin.get(item.where) or origin.get(item.where.rsplit("#", 1)[0]) or item


def _recording(origin: dict[str, Item], item: Item, emb: Embedded, plan: BuildPlan) -> NewRecording:
    row = _origin(origin, item)
    starts = item.offset_s + emb.starts_s  # seconds in the source (a range download starts later)
    texts = vectors = None
    if plan.texts is not None:
        texts, vectors = plan.texts.of(item, emb)
    return NewRecording(
        key=recording_key(item.source, row.start_s, row.end_s),
        source=item.source,
        group=item.group,
        label=item.label,
        starts_s=starts,
        ends_s=starts + emb.durations_s,
        vectors=np.ascontiguousarray(emb.embeddings[:, plan.layer, :], dtype=np.float32),
        transcripts=texts,
        text_vectors=vectors,
        local=item.local,
        offset_s=item.offset_s,
    )


def _failure_key(origin: dict[str, Item], failure: Failure) -> str:
    row = _origin(origin, failure.item)
    return recording_key(failure.item.source, row.start_s, row.end_s)


def _failure_row(failure: Failure) -> FailureRow:
    return FailureRow(failure.item.source, failure.item.where, failure.reason)
