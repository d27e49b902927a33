"""``Index``: an index folder opened for searching (and extending), with its encoders loaded on first use.

idx = Index.open("corpus.idx")
hits = idx.search("clip.wav", start_s=3.0, end_s=4.0, top_k=10, per_recording=True)
hits = idx.search(text="a train arriving")
hits = idx.search(Query.by_example("clip.wav"), SearchOptions(top_k=10))  # the same, as types
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.corpus.ann import Ann, read_state
from audioclf.corpus.build import BuildSummary, read_card
from audioclf.corpus.card import CorpusError, IndexCard
from audioclf.corpus.plan import IndexOptions, build, source_items
from audioclf.corpus.search import Hit, Ranked, SearchOptions, rank_ann, rank_exact, top_hits
from audioclf.corpus.similarity import Combine, Similarity, VectorStats, example_direction, prepare, unit
from audioclf.corpus.store import Store, WindowAudio
from audioclf.corpus.text import embed_texts, sentence_encoder
from audioclf.encoders.clap import ClapEncoder
from audioclf.encoders.loader import Encoder, load_encoder, precision_for, same_weights
from audioclf.encoders.spec import TEXT_ENCODERS, parse_spec
from audioclf.extraction.embed import embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache, default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, check_url, is_http_url, load_manifest
from audioclf.speech.text import SentenceEncoder

log = logging.getLogger(__name__)
DEFAULT_SEARCH = SearchOptions()
PREPARE_CHUNK = 65_536


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
    windows: tuple[int, ...] = ()  # windows of the index as the examples ("more like these": one direction)

    def __post_init__(self) -> None:
        kinds = [bool(self.examples), bool(self.text and self.text.strip()), bool(self.windows)]
        if sum(kinds) != 1:
            raise CorpusError("a query is one of: examples (files, URLs, time ranges), words or indexed windows")
        if self.text and self.negatives:
            raise CorpusError("negative examples go with example queries, not with words")

    @classmethod
    def like(cls, window_ids: Sequence[int]) -> Query:
        """Windows like these windows of the index (their mean direction)."""
        return cls(windows=tuple(int(w) for w in window_ids))

    @classmethod
    def by_example(cls, source: str | Path, start_s: float | None = None, end_s: float | None = None) -> Query:
        return cls(examples=(Example(str(source), start_s, end_s),))

    @classmethod
    def by_text(cls, text: str) -> Query:
        return cls(text=text)


def _query(
    example: str | os.PathLike[str] | None,
    text: str | None,
    start_s: float | None,
    end_s: float | None,
    negatives: Sequence[str | os.PathLike[str]],
) -> Query:
    cut = (start_s, end_s)
    examples = () if example is None else (Example(os.fspath(example), *cut),)
    return Query(examples=examples, negatives=tuple(Example(os.fspath(n)) for n in negatives), text=text)


class Index:
    def __init__(self, folder: Path, cache_dir: Path | None = None, fetch: FetchOptions | None = None) -> None:
        self.folder = Path(folder)
        self.card: IndexCard = read_card(self.folder)
        self.store = Store(self.folder)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.fetch = fetch
        self.last_build: BuildSummary | None = None
        self._ann_open: tuple[tuple[int, int, int], Ann, float] | None = None

    @classmethod
    def build(
        cls,
        out: str | os.PathLike[str],
        sources: Sequence[str | os.PathLike[str]] = (),
        *,
        manifest: str | os.PathLike[str] | None = None,
        encoder: str | None = None,
        window_s: float | None = None,
        hop_s: float | None = None,
        max_duration_s: float | None = None,
        layer: str | int | None = None,
        similarity: str | None = None,
        transcripts: bool = False,
        transcriber: str | None = None,
        text_encoder: str = "minilm",
        precision: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> Index:
        """Build (or extend) the index at ``out`` from files, folders and URLs and/or a manifest, and open it;
        ``last_build`` says what this build added and what failed."""
        items = load_manifest(Path(manifest), require_labels=False) if manifest is not None else []
        items += source_items([os.fspath(s) for s in sources])
        try:
            windows = WindowOptions.chosen(window_s, hop_s, max_duration_s)
        except ValueError as exc:
            raise CorpusError(str(exc), option="window") from None
        options = IndexOptions.parse(
            encoder=encoder,
            precision=precision,
            windows=windows,
            layer=layer,
            similarity=similarity,
            transcripts=transcripts,
            transcriber=transcriber,
            text_encoder=text_encoder,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            progress=progress,
        )
        summary = build(items, Path(out), options)
        index = cls(Path(out), options.cache_dir)
        index.last_build = summary
        return index

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

    def search(
        self,
        query: Query | str | os.PathLike[str] | None = None,
        options: SearchOptions | None = None,
        *,
        text: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        negatives: Sequence[str | os.PathLike[str]] = (),
        top_k: int = DEFAULT_SEARCH.top_k,
        per_recording: bool = False,
        exclude_source: bool = False,
        combine: str | Combine = DEFAULT_SEARCH.combine,
    ) -> list[Hit]:
        """The best windows for ``query``: a ``Query``, or an example file / URL (``start_s``/``end_s`` cut it),
        or ``text=`` words; ``negatives`` push hits away. Options come as a ``SearchOptions`` or as keywords."""
        if not isinstance(query, Query):
            query = _query(query, text, start_s, end_s, negatives)
        if options is None:
            try:
                options = SearchOptions(top_k, per_recording, exclude_source, Combine(combine))
            except ValueError as exc:
                raise CorpusError(str(exc), option="top_k") from None
        return self._search(query, options)

    def _search(self, query: Query, options: SearchOptions) -> list[Hit]:
        if query.text is not None:
            ranked = self._search_text(query.text, options)
        else:
            ranked = self._search_examples(query, options)
        rows = self.store.rows([int(i) for i in ranked.window_ids])
        found = zip(ranked.window_ids, ranked.scores, strict=True)
        return [Hit.of(rows[int(i)], float(s), query.name) for i, s in found]

    def exact_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, VectorStats | None]:
        """Every window's id, recording and prepared vector (held in memory), and the statistics they were
        prepared with: what exact search ranks, and what a quick model is fitted on."""
        return self._exact

    def window_audio(self, window_id: int) -> WindowAudio | None:
        """Where one window's audio is on this machine (None: no such window)."""
        return self.store.window_audio(window_id)

    def search_many(self, queries: Sequence[Query], options: SearchOptions = DEFAULT_SEARCH) -> list[Hit]:
        return [hit for query in queries for hit in self._search(query, options)]

    def _search_examples(self, query: Query, options: SearchOptions) -> Ranked:
        opened = self._ann()
        stats = self._stats(opened)
        if query.windows:
            positives = self._window_direction(query.windows, stats)
        else:
            positives = self._directions(query.examples, stats)
        negatives = self._directions(query.negatives, stats) if query.negatives else None
        excluded: set[int] = set()
        if options.exclude_source:
            for n, example in enumerate(query.examples):
                excluded |= self.store.recordings_of(example.item(n).source)
        return self._rank(opened, positives, negatives, options, excluded)

    def _stats(self, opened: tuple[Ann, float] | None) -> VectorStats | None:
        """The statistics the ranked vectors were prepared with (the ANN graph's, or the exact arrays')."""
        return opened[0].state.stats if opened is not None else self._exact[3]

    def _rank(
        self,
        opened: tuple[Ann, float] | None,
        positives: np.ndarray,
        negatives: np.ndarray | None,
        options: SearchOptions,
        excluded: set[int],
    ) -> Ranked:
        if opened is not None:
            ann, per = opened
            return rank_ann(ann, self._recordings_of, positives, negatives, options, excluded, per)
        ids, recordings, prepared, _ = self._exact
        return rank_exact(ids, recordings, prepared, positives, negatives, options, excluded)

    def _search_text(self, text: str, options: SearchOptions) -> Ranked:
        encoder = self.encoder if self.card.text is None else None
        if isinstance(encoder, ClapEncoder) and encoder.reads_text:  # words and sounds in one space: CLAP's
            opened = self._ann()
            words = prepare(encoder.embed_text([text.strip()]), self.card.similarity, self._stats(opened))
            return self._rank(opened, example_direction(words)[None, :], None, options, set())
        query = unit(embed_texts(self.text_encoder, [text.strip()]))
        ids, recordings, vectors = self._texts
        said = self.store.windows_saying(text.strip())  # the words themselves rank above mere likeness
        literal = np.isin(ids, np.fromiter(said, dtype=np.int64)).astype(np.float32)
        return top_hits(ids, recordings, vectors @ query[0] + literal, options)

    def _directions(self, examples: Sequence[Example], stats: VectorStats | None) -> np.ndarray:
        """One unit direction per example: the mean of its prepared windows ([n_examples, dim])."""
        prepared = [prepare(v, self.card.similarity, stats) for v in self.embed_examples(examples)]
        return np.stack([example_direction(p) for p in prepared])

    def _window_direction(self, window_ids: Sequence[int], stats: VectorStats | None) -> np.ndarray:
        """One unit direction ([1, dim]): the mean of the named windows' prepared vectors."""
        found = self.store.vectors_of(window_ids, self.card.dim)
        missing = [w for w in window_ids if w not in found]
        if missing:
            raise CorpusError(f"window {missing[0]}: not in this index; give ids of its windows (from a search)")
        raw = np.stack([found[w] for w in window_ids])
        return example_direction(prepare(raw, self.card.similarity, stats))[None, :]

    def embed_examples(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """The raw vectors (at the index's layer) of every window of each example: one [n, dim] each."""
        items = [example.item(n) for n, example in enumerate(examples)]
        windows = self.card.windows
        cache = EmbeddingCache(self.cache_dir, self.encoder.identity, windows)
        fetch = self.fetch or FetchOptions(cache_dir=self.cache_dir, max_duration_s=windows.max_duration_s)
        result = embed_items(items, self.encoder, cache, windows, fetch=fetch, progress=False)
        if result.failures:
            f = result.failures[0]
            raise CorpusError(f"query {f.item.where}: {f.reason}")
        return [emb.embeddings[:, self.card.layer, :] for _, emb in result.embedded]

    def _ann(self) -> tuple[Ann, float] | None:
        """The ANN graph (and the windows per recording it was opened with) when it covers every window; opened
        once per state of the graph, not per query (opening maps the file and counts the store)."""
        state = read_state(self.folder)
        if state is None or state.covered_to < self.store.last_window_id():
            return None
        if state.similarity is not self.card.similarity:
            return None
        key = (state.covered_to, state.n, state.stats_n)
        if self._ann_open is None or self._ann_open[0] != key:
            n_recordings, n_windows = self.store.counts()
            self._ann_open = (key, Ann(self.folder, state), n_windows / max(1, n_recordings))
        return self._ann_open[1], self._ann_open[2]

    def _recordings_of(self, window_ids: np.ndarray) -> np.ndarray:
        found = self.store.recording_of([int(i) for i in window_ids])
        return np.asarray([found[int(i)] for i in window_ids], dtype=np.int64)

    @functools.cached_property
    def _exact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, VectorStats | None]:
        """(window ids, their recordings, prepared vectors, the index's statistics), held for exact search; the
        raw vectors are let go once prepared."""
        ids, vectors = self.store.vectors(self.card.dim)
        if not len(ids):
            raise CorpusError(f"{self.folder}: the index is empty; add recordings to it first")
        similarity = self.card.similarity
        stats = None if similarity is Similarity.COSINE else VectorStats.of(vectors)
        for start in range(0, len(vectors), PREPARE_CHUNK):  # in place: the vectors are held once
            vectors[start : start + PREPARE_CHUNK] = prepare(vectors[start : start + PREPARE_CHUNK], similarity, stats)
        _, recordings = self.store.window_recordings()
        return ids, recordings[: len(ids)], vectors, stats

    @functools.cached_property
    def _texts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.card.text is not None
        ids, vectors = self.store.vectors(self.card.text.dim, column="text_vector")
        if not len(ids):
            raise CorpusError(f"{self.folder}: the index is empty; add recordings to it first")
        _, recordings = self.store.window_recordings()
        return ids, recordings, vectors
