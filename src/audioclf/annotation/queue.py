"""Where a review queue comes from: ``suggest`` (the quick model of the labels so far), a trained model's
predictions on the index (to check and correct them), or a search (by words, or like windows already seen).
The source is parsed once into a ``QueueSource`` and dispatched; every queue leaves out what is answered or
leased to another reviewer, and says what each item's answer will be logged as coming from."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from audioclf.annotation.labels import Labels, Origin
from audioclf.annotation.scorers import Scorer
from audioclf.annotation.suggest import DEFAULT_STRATEGY, Strategy, StrategyKind, Suggested, Suggestion, suggest
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Index, Query
from audioclf.corpus.search import Hit, SearchOptions

SEARCH_DEPTH = 8  # a search queue looks this many times deeper than it needs, for hits already answered


class QueueFrom(enum.StrEnum):
    SUGGEST = "suggest"  # the quick model of the labels so far
    MODEL = "model"  # the trained model's predictions
    SEARCH = "search"  # the hits of a search


@dataclass(frozen=True)
class QueueSource:
    kind: QueueFrom = QueueFrom.SUGGEST
    strategy: Strategy = DEFAULT_STRATEGY
    query: Query | None = None  # for SEARCH

    @classmethod
    def parse(cls, kind: str | None, strategy: str | None, text: str | None, like: str | None) -> QueueSource:
        """From the words a page or a command gives: ``from`` (suggest, model, search), a strategy, and for a
        search its words or the ids of windows to find more like (``12,40``)."""
        try:
            chosen = QueueFrom(kind or QueueFrom.SUGGEST)
        except ValueError:
            raise CorpusError(f"queue from {kind!r}: use suggest, model or search") from None
        if chosen is not QueueFrom.SEARCH:
            if text or like:
                raise CorpusError(f"words and windows to search by go with a search queue, not {chosen}")
            default = Strategy(StrategyKind.MARGIN) if chosen is QueueFrom.MODEL else DEFAULT_STRATEGY
            return cls(chosen, Strategy.parse(strategy) if strategy else default)
        if bool(text and text.strip()) == bool(like):
            raise CorpusError("a search queue takes words or the ids of windows to find more like, one of them")
        if like:
            parts = [p.strip() for p in like.split(",")]
            if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts) or len(parts) > 50:
                raise CorpusError(f"like={like[:40]!r}: give up to 50 window ids, separated by commas")
            return cls(chosen, query=Query.like([int(p) for p in parts]))
        return cls(chosen, query=Query.by_text(str(text)))

    @property
    def origin(self) -> Origin:
        """What an answer to one of its items is logged as coming from."""
        if self.kind is QueueFrom.SEARCH:
            return Origin.SEARCH
        if self.kind is QueueFrom.MODEL:
            return Origin.MODEL
        return Origin.RANDOM if self.strategy.kind is StrategyKind.RANDOM else Origin.SUGGESTION


def fill_queue(
    index: Index, labels: Labels, n: int, source: QueueSource, *, model: Scorer | None = None, annotator: str = ""
) -> Suggested:
    """The next ``n`` windows of ``source`` for ``annotator`` (not leased here: the caller leases them)."""
    if source.kind is QueueFrom.SEARCH:
        assert source.query is not None, "QueueSource.parse gives a search its query"
        return search_queue(index, labels, source.query, n, annotator=annotator)
    if source.kind is QueueFrom.MODEL and model is None:
        raise CorpusError("no trained model to queue predictions from: give one (a probe on this index's encoder)")
    scorer = model if source.kind is QueueFrom.MODEL else None
    return suggest(index, labels, n, source.strategy, scorer=scorer, annotator=annotator)


def search_queue(index: Index, labels: Labels, query: Query, n: int, *, annotator: str = "") -> Suggested:
    """The best hits of ``query`` not answered nor leased to another reviewer, one per recording first."""
    taken = labels.seen() | labels.leased_by_others(annotator) | set(query.windows)
    depth = min(len(index), (n + len(taken)) * SEARCH_DEPTH)
    hits = [h for h in index.search(query, SearchOptions(top_k=max(1, depth))) if h.window_id not in taken]
    recording = index.store.recording_of([h.window_id for h in hits])
    seen_recordings: set[int] = set()
    first: list[Hit] = []
    rest: list[Hit] = []
    for hit in hits:
        (rest if recording[hit.window_id] in seen_recordings else first).append(hit)
        seen_recordings.add(recording[hit.window_id])
    chosen = (first + rest)[:n]
    out = [Suggestion(h.window_id, h.source, h.start_s, h.end_s, h.group, None, h.score, "search") for h in chosen]
    return Suggested(out, None, None)
