"""Items -> per-window embeddings, through the cache; a bad file is reported and skipped, never fatal."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import WindowOptions, iter_windows
from .cache import Embedded, EmbeddingCache, file_digest
from .encoders import Encoder
from .errors import DecodeError
from .fileio import write_text_atomic
from .manifest import Item

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
    audio_s: float = 0.0  # seconds of audio newly embedded
    seconds: float = 0.0

    def summary(self) -> str:
        ok = len(self.embedded)
        rate = f", {self.audio_s / self.seconds:.0f}x realtime" if self.audio_s and self.seconds else ""
        return f"embedded {ok} recordings ({self.n_cached} from cache{rate}), {len(self.failures)} failed" + (
            " (see failures.csv)" if self.failures else ""
        )


def embed_one(path: str, encoder: Encoder, windows: WindowOptions) -> Embedded:
    """Embed every window of one recording, streaming: a long file is never held whole."""
    parts: list[np.ndarray] = []
    starts: list[float] = []
    durations: list[float] = []
    pending: list[np.ndarray] = []
    for window in iter_windows(path, windows):
        starts.append(window.start_s)
        durations.append(window.duration_s)
        pending.append(window.samples)
        if len(pending) >= WINDOWS_PER_CALL:
            parts.append(encoder.embed(pending))
            pending = []
    if pending:
        parts.append(encoder.embed(pending))
    return Embedded(np.concatenate(parts), np.asarray(starts), np.asarray(durations))


def embed_items(
    items: Sequence[Item],
    encoder: Encoder,
    cache: EmbeddingCache,
    windows: WindowOptions,
    *,
    progress: bool = True,
) -> EmbedResult:
    """Embed ``items`` (cached ones are read back), skipping and recording the ones that fail."""
    result = EmbedResult()
    started = time.perf_counter()
    for item in tqdm(items, desc="embedding", unit="file", disable=not progress, leave=False):
        try:
            digest = file_digest(item.source)
            entry = cache.get(digest)
            if entry is not None:
                result.n_cached += 1
            else:
                entry = embed_one(item.source, encoder, windows)
                cache.put(digest, entry)
                result.audio_s += float(entry.durations_s.sum())
        except (DecodeError, OSError) as exc:
            reason = str(exc) if isinstance(exc, DecodeError) else f"{item.source}: {exc.strerror or exc}"
            log.warning("skipped %s: %s", item.where, reason)
            result.failures.append(Failure(item, reason))
            continue
        result.embedded.append((item, entry))
    result.seconds = time.perf_counter() - started
    return result


def write_failures(failures: Sequence[Failure], path: Path) -> None:
    """failures.csv: source, row, reason — one line per skipped item."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "row", "reason"])
    for failure in failures:
        writer.writerow([failure.item.source, failure.item.where, failure.reason])
    write_text_atomic(path, buf.getvalue())
