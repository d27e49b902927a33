"""Items -> per-window embeddings, through the cache; a bad file is reported and skipped, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import WindowOptions, iter_windows
from .cache import Embedded, EmbeddingCache, content_key
from .encoders import Encoder
from .errors import DecodeError
from .fileio import write_csv_atomic
from .manifest import Item
from .sources import FetchError, FetchOptions, fetch_all

log = logging.getLogger(__name__)

WINDOWS_PER_CALL = 16  # windows of a long recording sent to the encoder at once


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

    def summary(self) -> str:
        ok = len(self.embedded)
        rate = f", {self.audio_s / self.seconds:.0f}x realtime" if self.audio_s and self.seconds else ""
        fetched = f", {self.n_downloaded} downloaded" if self.n_downloaded else ""
        return f"embedded {ok} recordings ({self.n_cached} from cache{fetched}{rate}), {len(self.failures)} failed"


def embed_one(item: Item, encoder: Encoder, windows: WindowOptions) -> Embedded:
    """Embed every window of one recording, streaming: a long file is never held whole."""
    parts: list[np.ndarray] = []
    starts: list[float] = []
    durations: list[float] = []
    pending: list[np.ndarray] = []
    for window in iter_windows(item.file, windows, item.start_s or 0.0, item.end_s):
        starts.append(window.start_s)
        durations.append(window.duration_s)
        pending.append(window.samples)
        if len(pending) >= WINDOWS_PER_CALL:
            parts.append(encoder.embed(pending))
            pending = []
    if pending:
        parts.append(encoder.embed(pending))
    return Embedded(np.concatenate(parts), np.asarray(starts), np.asarray(durations))


@dataclass
class _Embedder:
    """Embeds items one by one into ``result``, keeping each success with its (row, entry) position."""

    encoder: Encoder
    cache: EmbeddingCache
    windows: WindowOptions
    result: EmbedResult = field(default_factory=EmbedResult)
    done: list[tuple[tuple[int, int], Item, Embedded]] = field(default_factory=list)

    def add(self, position: tuple[int, int], item: Item, error: str | None = None) -> None:
        try:
            if error is not None:
                raise FetchError(error)
            key = content_key(item)
            emb = self.cache.get(key)
            if emb is not None:
                self.result.n_cached += 1
            else:
                emb = embed_one(item, self.encoder, self.windows)
                self.cache.put(key, emb)
                self.result.audio_s += float(emb.durations_s.sum())
        except (DecodeError, FetchError, OSError) as exc:
            reason = f"{item.file}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            log.warning("skipped %s: %s", item.where, reason)
            self.result.failures.append(Failure(item, reason))
            return
        self.done.append((position, item, emb))


def embed_items(
    items: Sequence[Item],
    encoder: Encoder,
    cache: EmbeddingCache,
    windows: WindowOptions,
    *,
    fetch: FetchOptions | None = None,
    progress: bool = True,
) -> EmbedResult:
    """Embed ``items`` in manifest order (cached ones are read back; URLs are downloaded first, in parallel,
    and each is embedded as soon as it arrives), skipping and recording the ones that fail."""
    started = time.perf_counter()
    embedder = _Embedder(encoder, cache, windows)
    remote = [(row, item) for row, item in enumerate(items) if item.is_url]
    with tqdm(total=len(items), desc="embedding", unit="file", disable=not progress, leave=False) as bar:
        if remote:
            for r in fetch_all([item for _, item in remote], fetch or FetchOptions(cache_dir=cache.root)):
                if r.entry > 0:
                    bar.total += 1
                embedder.result.n_downloaded += r.fresh
                embedder.add((remote[r.row][0], r.entry), r.item, r.error)
                bar.update()
        for row, item in enumerate(items):
            if not item.is_url:
                embedder.add((row, 0), item)
                bar.update()
    result = embedder.result
    result.embedded = [(item, emb) for _, item, emb in sorted(embedder.done, key=lambda d: d[0])]
    result.seconds = time.perf_counter() - started
    return result


def write_failures(failures: Sequence[Failure], path: Path) -> None:
    """failures.csv: source (file or URL), row, reason — one line per skipped item."""
    rows = [{"source": f.item.source, "row": f.item.where, "reason": f.reason} for f in failures]
    write_csv_atomic(path, ["source", "row", "reason"], rows)
