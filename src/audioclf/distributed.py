"""Embedding on a Ray cluster (``embed --ray [ADDRESS]``): the same cache, keys and failures as one machine.

Work is split by item: chunks of a few manifest rows go to a pool of actors, each of which loads the encoder
once and runs the ordinary single-machine pipeline (``embed_items``: download, decode, batch, cache) on its
chunk. ``ray.util.ActorPool`` hands a chunk to an actor only when it is free, which is the backpressure:
downloads never run ahead of the encoders. The cache directory must be shared by every node (a network or
cluster filesystem); entries are written atomically under file locks, so a cluster run and a single-machine
run resume each other's work. A killed actor is restarted by Ray and its in-flight chunk retried; chunks that
finished are in the cache already. Ray is optional (``pip install 'audioclf[ray]'``) and only imported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .audio import WindowOptions
from .embed import EmbedResult, Failure
from .errors import AudioclfError
from .manifest import Item
from .sources import FetchOptions

log = logging.getLogger(__name__)

CHUNK_ITEMS = 8  # manifest rows per task: small enough to balance, large enough to batch short clips


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance on this machine
    workers: int | None = None  # encoder actors; None: one per CPU Ray reports
    cpus_per_worker: float = 1.0


@dataclass
class ChunkResult:
    """What one actor reports for one chunk (plain data: it crosses process boundaries)."""

    n_embedded: int = 0
    n_cached: int = 0
    n_downloaded: int = 0
    audio_s: float = 0.0
    failures: list[tuple[Item, str]] = field(default_factory=list)


class _Worker:
    """One encoder per actor process, reused for every chunk it is given."""

    def __init__(self, spec: str | None, precision: str, cache_dir: str, windows: WindowOptions,
                 fetch: FetchOptions | None) -> None:  # fmt: skip
        from .cache import EmbeddingCache
        from .encoders import load_encoder

        self._encoder = load_encoder(spec, precision).encoder
        self._cache = EmbeddingCache(Path(cache_dir), self._encoder.identity, windows)
        self._windows = windows
        self._fetch = fetch

    def embed(self, items: list[Item]) -> ChunkResult:
        from .embed import embed_items

        r = embed_items(items, self._encoder, self._cache, self._windows, fetch=self._fetch, progress=False)
        return ChunkResult(len(r.embedded), r.n_cached, r.n_downloaded, r.audio_s,
                           [(f.item, f.reason) for f in r.failures])  # fmt: skip


def embed_on_ray(
    items: Sequence[Item],
    spec: str | None,
    precision: str,
    cache_dir: Path,
    windows: WindowOptions,
    *,
    fetch: FetchOptions | None = None,
    options: RayOptions = RayOptions(),
    progress: bool = True,
) -> EmbedResult:
    """The summary of embedding ``items`` into ``cache_dir`` with a pool of Ray actors."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise AudioclfError("--ray needs Ray: pip install 'audioclf[ray]'") from None
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    n_workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_worker))
    actor = ray.remote(num_cpus=options.cpus_per_worker, max_restarts=-1, max_task_retries=3)(_Worker)
    workers: list[Any] = [actor.remote(spec, precision, str(cache_dir), windows, fetch) for _ in range(n_workers)]
    chunks = [list(items[i : i + CHUNK_ITEMS]) for i in range(0, len(items), CHUNK_ITEMS)]
    result = EmbedResult(n_embedded=0)
    pool = ActorPool(workers)
    with tqdm(total=len(items), desc=f"embedding on Ray ({n_workers} workers)", unit="file",
              disable=not progress) as bar:  # fmt: skip
        for chunk in pool.map_unordered(lambda w, c: w.embed.remote(c), chunks):
            result.n_embedded = (result.n_embedded or 0) + chunk.n_embedded
            result.n_cached += chunk.n_cached
            result.n_downloaded += chunk.n_downloaded
            result.audio_s += chunk.audio_s
            result.failures += [Failure(item, reason) for item, reason in chunk.failures]
            bar.update(chunk.n_embedded + len(chunk.failures))
    result.seconds = time.perf_counter() - started
    log.info("Ray: %d chunks on %d workers", len(chunks), n_workers)
    return result
