"""``Index``: an index folder opened for searching (and extending), with its encoders loaded on first use.

idx = Index.open("corpus.idx")
hits = idx.search(Query.by_example("clip.wav", start_s=3.0, end_s=4.0), SearchOptions(top_k=10))
hits = idx.search(Query.by_text("a train arriving"))
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.corpus.ann import Ann, read_state
from audioclf.corpus.build import read_card
from audioclf.corpus.card import CorpusError, IndexCard
from audioclf.corpus.search import Hit, Ranked, SearchOptions, rank_ann, rank_exact, top_hits
from audioclf.corpus.similarity import VectorStats, prepare, unit
from audioclf.corpus.store import Store
from audioclf.corpus.text import embed_texts, sentence_encoder
from audioclf.encoders.loader import Encoder, load_encoder, precision_for, same_weights
from audioclf.encoders.spec import TEXT_ENCODERS, parse_spec
from audioclf.extraction.embed import embed_items
from audioclf.io.cache import EmbeddingCache, default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, check_url, is_http_url
from audioclf.speech.text import SentenceEncoder

log = logging.getLogger(__name__)
DEFAULT_SEARCH = SearchOptions()


@dataclass(frozen=True)
class Example:
    """A file or URL, or a time range of it, whose windows are the query's examples."""

    source: str
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise CorpusError(f"{self.source}: end {self.end_s:g} s is not after start {self.start_s:g} s")

    def item(self, n: int) -> Item:
        source = check_url(self.source) if is_http_url(self.source) else str(Path(self.source).resolve())
        where = f"example {n + 1} ({self.source})"
        return Item(source, None, None, f"query:{n}", where, start_s=self.start_s, end_s=self.end_s)


@dataclass(frozen=True)
class Query:
    examples: tuple[Example, ...] = ()
    negatives: tuple[Example, ...] = ()
    text: str | None = None
    name: str | None = None  # reported with each hit when several queries run at once

    def __post_init__(self) -> None:
        if bool(self.examples) == bool(self.text and self.text.strip()):
            raise CorpusError("a query is either examples (files, URLs, time ranges) or words, and not empty")
        if self.text and self.negatives:
            raise CorpusError("negative examples go with example queries, not with words")

    @classmethod
    def by_example(cls, source: str | Path, start_s: float | None = None, end_s: float | None = None) -> Query:
        return cls(examples=(Example(str(source), start_s, end_s),))

    @classmethod
    def by_text(cls, text: str) -> Query:
        return cls(text=text)


class Index:
    def __init__(self, folder: Path, cache_dir: Path | None = None, fetch: FetchOptions | None = None) -> None:
        self.folder = Path(folder)
        self.card: IndexCard = read_card(self.folder)
        self.store = Store(self.folder)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.fetch = fetch

    @classmethod
    def open(cls, folder: str | Path, *, cache_dir: str | Path | None = None) -> Index:
        return cls(Path(folder), None if cache_dir is None else Path(cache_dir))

    def close(self) -> None:
        self.store.close()

    def __len__(self) -> int:
        return self.store.counts()[1]

    def __repr__(self) -> str:
        n_rec, n_win = self.store.counts()
        return f"Index({str(self.folder)!r}, {n_rec} recordings, {n_win} windows, encoder={self.card.encoder})"

    @functools.cached_property
    def encoder(self) -> Encoder:
        spec = parse_spec(self.card.encoder)
        encoder = load_encoder(spec, precision_for(self.card.encoder_identity)).encoder
        if not same_weights(encoder.identities, self.card.encoder_identity):
            raise CorpusError(
                f"{self.folder}: built with {spec} as it was then; the model loaded from {spec} now has other "
                "weights, so its query vectors would not match; rebuild the index or restore that model"
            )
        return encoder

    @functools.cached_property
    def text_encoder(self) -> SentenceEncoder:
        if self.card.text is None:
            raise CorpusError(f"{self.folder}: has no transcripts to search by words; rebuild it with transcripts")
        return sentence_encoder(parse_spec(self.card.text.text_encoder, TEXT_ENCODERS, "text encoder"))

    def search(self, query: Query, options: SearchOptions = DEFAULT_SEARCH) -> list[Hit]:
        if query.text is not None:
            ranked = self._search_text(query.text, options)
        else:
            ranked = self._search_examples(query, options)
        rows = self.store.rows([int(i) for i in ranked.window_ids])
        found = zip(ranked.window_ids, ranked.scores, strict=True)
        return [Hit.of(rows[int(i)], float(s), query.name) for i, s in found]

    def search_many(self, queries: Sequence[Query], options: SearchOptions = DEFAULT_SEARCH) -> list[Hit]:
        return [hit for query in queries for hit in self.search(query, options)]

    def _search_examples(self, query: Query, options: SearchOptions) -> Ranked:
        ann = self._ann()
        stats = ann.state.stats if ann is not None else self._exact_stats
        positives = prepare(self.embed_examples(query.examples), self.card.similarity, stats)
        negatives = None
        if query.negatives:
            negatives = prepare(self.embed_examples(query.negatives), self.card.similarity, stats)
        excluded: set[int] = set()
        if options.exclude_source:
            for n, example in enumerate(query.examples):
                excluded |= self.store.recordings_of(example.item(n).source)
        if ann is not None:
            return rank_ann(ann, self._recordings_of, positives, negatives, options, excluded)
        ids, recordings, prepared = self._exact
        return rank_exact(ids, recordings, prepared, positives, negatives, options, excluded)

    def _search_text(self, text: str, options: SearchOptions) -> Ranked:
        query = unit(embed_texts(self.text_encoder, [text.strip()]))
        ids, recordings, vectors = self._texts
        said = self.store.windows_saying(text.strip())  # the words themselves rank above mere likeness
        literal = np.isin(ids, np.fromiter(said, dtype=np.int64)).astype(np.float32)
        return top_hits(ids, recordings, vectors @ query[0] + literal, options)

    def embed_examples(self, examples: Sequence[Example]) -> np.ndarray:
        """The raw vectors (at the index's layer) of every window of every example: [n, dim]."""
        items = [example.item(n) for n, example in enumerate(examples)]
        windows = self.card.windows
        cache = EmbeddingCache(self.cache_dir, self.encoder.identity, windows)
        fetch = self.fetch or FetchOptions(cache_dir=self.cache_dir, max_duration_s=windows.max_duration_s)
        result = embed_items(items, self.encoder, cache, windows, fetch=fetch, progress=False)
        if result.failures:
            f = result.failures[0]
            raise CorpusError(f"query {f.item.where}: {f.reason}")
        return np.concatenate([emb.embeddings[:, self.card.layer, :] for _, emb in result.embedded])

    def _ann(self) -> Ann | None:
        state = read_state(self.folder)
        if state is None or state.covered_to < self.store.last_window_id():
            return None
        if state.similarity is not self.card.similarity:
            return None
        return Ann(self.folder, state)

    def _recordings_of(self, window_ids: np.ndarray) -> np.ndarray:
        found = self.store.recording_of([int(i) for i in window_ids])
        return np.asarray([found[int(i)] for i in window_ids], dtype=np.int64)

    @functools.cached_property
    def _raw(self) -> tuple[np.ndarray, np.ndarray]:
        ids, vectors = self.store.vectors(self.card.dim)
        if not len(ids):
            raise CorpusError(f"{self.folder}: the index is empty; add recordings to it first")
        return ids, vectors

    @functools.cached_property
    def _exact_stats(self) -> VectorStats:
        return VectorStats.of(self._raw[1])

    @functools.cached_property
    def _exact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, vectors = self._raw
        _, recordings = self.store.window_recordings()
        stats = self._exact_stats if self.card.similarity.value != "cosine" else None
        return ids, recordings, prepare(vectors, self.card.similarity, stats)

    @functools.cached_property
    def _texts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.card.text is not None
        ids, vectors = self.store.vectors(self.card.text.dim, column="text_vector")
        if not len(ids):
            raise CorpusError(f"{self.folder}: the index is empty; add recordings to it first")
        _, recordings = self.store.window_recordings()
        return ids, recordings, vectors
