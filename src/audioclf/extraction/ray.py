"""Fetching and embedding on a Ray cluster (``--ray [ADDRESS]`` on ``fetch``, ``embed`` and ``train``): the
same cache, keys and failures as one machine.

Work is split by item: chunks of a few manifest rows go to a pool of actors. An embedding actor loads the
encoder once and runs the ordinary single-machine pipeline (``embed_items``: download, decode, batch, cache) on
each chunk it is given; a fetching actor runs ``fetch_all`` (yt-dlp, with its retries) on its chunk.
``ray.util.ActorPool`` hands an embedding actor a chunk only when one of its two slots is free, which is the
backpressure: one chunk downloads while the other encodes, so downloads run at most a chunk ahead of the
encoder, and ``--min-free`` stops downloads before they fill the disk. The cache directory
must be shared by every node (a network or cluster filesystem); entries are written atomically under file
locks, so a cluster run and a single-machine run resume each other's work. A killed actor is restarted by Ray
and its in-flight chunks retried; chunks that finished are in the cache already. Ray is optional
(``pip install 'audioclf[ray]'``) and only imported when a run starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.errors import AudioclfError
from audioclf.extraction.embed import EmbedResult, Failure
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions, Resolved, fetch_all
from audioclf.io.manifest import Item
from audioclf.speech.text_features import FeatureOptions

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CHUNK_ITEMS = 8  # manifest rows per task: small enough to balance, large enough to batch short clips
SLOTS_PER_WORKER = 2  # chunks an embedding actor holds at once: one downloading while the other encodes


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance on this machine
    workers: int | None = None  # actors; None: one per CPU Ray reports
    cpus_per_worker: float = 1.0


@dataclass
class WorkerStats:
    """What one actor process did (a restarted actor is a new process, so it gets its own row)."""

    worker: str  # node address and process id
    chunks: int = 0
    items: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0  # encoding (embed) or downloading (fetch)
    download_s: float = 0.0  # embed: downloading, overlapped with the other slot's encoding


@dataclass
class ChunkResult:
    """What one actor reports for one chunk (plain data: it crosses process boundaries)."""

    worker: str
    busy_s: float
    n_embedded: int = 0
    n_cached: int = 0
    n_downloaded: int = 0
    audio_s: float = 0.0
    failures: list[tuple[Item, str]] = field(default_factory=list)
    fetched: list[Resolved] = field(default_factory=list)
    download_s: float = 0.0
    fatal: str | None = None  # the worker cannot work at all (e.g. its encoder does not load there)


@dataclass
class RayRun:
    """The driver's view of a Ray run: the merged result and a row per actor process."""

    result: EmbedResult
    workers: list[WorkerStats]
    fetched: list[Resolved] = field(default_factory=list)


def _me() -> str:
    import ray

    return f"{ray.util.get_node_ip_address()}:{os.getpid()}"


class _EmbedActor:
    """One encoder per actor process, reused for every chunk it is given. The actor takes two chunks at once
    (``SLOTS_PER_WORKER``): one downloads while the other encodes, and the encoder runs one chunk at a time."""

    def __init__(
        self,
        spec: ModelSpec | None,
        precision: Precision,
        cache_dir: str,
        windows: WindowOptions,
        fetch: FetchOptions | None,
        features: FeatureOptions | None,
    ) -> None:
        from audioclf.encoders.loader import fit_windows, load_encoder
        from audioclf.io.cache import EmbeddingCache
        from audioclf.speech.text_features import Transcripts

        self._fatal: str | None = None
        try:
            self._encoder = load_encoder(spec, precision).encoder
            windows = fit_windows(windows, self._encoder)
            self._said = (
                None if features is None else Transcripts(features.transcriber, self._encoder, Path(cache_dir), windows)
            )
        except AudioclfError as exc:  # reported by the first chunk, as one line on the driver
            self._fatal = str(exc)
            return
        self._cache = EmbeddingCache(Path(cache_dir), self._encoder.identity, windows)
        self._windows = windows
        self._fetch = fetch or FetchOptions(cache_dir=Path(cache_dir))
        self._encoding = threading.Lock()

    def run(self, items: list[Item]) -> ChunkResult:
        from audioclf.extraction.embed import embed_items

        if self._fatal is not None:
            return ChunkResult(_me(), 0.0, fatal=self._fatal)
        started = time.perf_counter()
        remote = [i for i in items if i.needs_fetch]
        fetched = list(fetch_all(remote, self._fetch)) if remote else []
        downloaded = time.perf_counter()
        ready = [i for i in items if not i.needs_fetch] + [x.item for x in fetched if x.error is None]
        with self._encoding:
            encoding = time.perf_counter()
            same_pass = self._said.same_pass_cache if self._said is not None else None
            done = embed_items(ready, self._encoder, self._cache, self._windows, progress=False, transcripts=same_pass)
            if self._said is not None:  # into the transcript cache, for the driver's text features
                self._said([item for item, _ in done.embedded])
        failures = [(x.item, x.error) for x in fetched if x.error is not None]
        failures += [(f.item, f.reason) for f in done.failures]
        return ChunkResult(
            _me(),
            time.perf_counter() - encoding,
            len(done.embedded),
            done.n_cached,
            sum(x.fresh for x in fetched),
            done.audio_s,
            failures,
            download_s=downloaded - started,
        )


class _Fetcher:
    """Downloads a chunk of URL rows into the shared media cache (yt-dlp, with its retries)."""

    def __init__(self, fetch: FetchOptions) -> None:
        self._fetch = fetch

    def run(self, items: list[Item]) -> ChunkResult:
        started = time.perf_counter()
        done = list(fetch_all(items, self._fetch))
        return ChunkResult(_me(), time.perf_counter() - started, n_downloaded=sum(r.fresh for r in done), fetched=done)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AudioclfError("running on Ray needs Ray: pip install 'audioclf[ray]'", option="ray") from None
    return ray


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, not minutes (Ray's own GCS connect retries), when a cluster address does not answer."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    hint = "give the head node as host:6379 or ray://host:10001"
    if not port.isdigit():
        raise AudioclfError(f"Ray address {address}: not an address; {hint}, or none for a local Ray", option="ray")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise AudioclfError(
            f"Ray address {address}: cannot reach the cluster ({exc}); {hint}, and check it is up", option="ray"
        ) from None


def _on_pool(
    items: Sequence[Item], options: RayOptions, make: Callable[[Any], Any], what: str, progress: bool, slots: int = 1
) -> Iterator[tuple[ChunkResult, Any]]:
    """Run chunks of ``items`` on a pool of actors made by ``make(actor_class_factory)``, yielding each chunk's
    result (with the progress bar, to advance) as soon as it is done. A chunk goes to an actor only when one of
    its ``slots`` is free: nothing runs more than a chunk ahead of the slowest stage."""
    ray = _ray()
    from ray.util import ActorPool

    if not ray.is_initialized():
        _check_reachable(options.address)
        try:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise AudioclfError(f"Ray address {options.address}: {exc}", option="ray") from None
    n_workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_worker))
    remote = ray.remote(num_cpus=options.cpus_per_worker, max_restarts=-1, max_task_retries=3, max_concurrency=slots)
    actors = [make(remote) for _ in range(n_workers)]
    pool = ActorPool([actor for actor in actors for _ in range(slots)])  # an actor listed twice takes two chunks
    chunks = [list(items[i : i + CHUNK_ITEMS]) for i in range(0, len(items), CHUNK_ITEMS)]
    log.info("Ray: %d chunks of up to %d items on %d workers", len(chunks), CHUNK_ITEMS, n_workers)
    with tqdm(total=len(items), desc=f"{what} on Ray ({n_workers} workers)", unit="item", disable=not progress) as bar:
        try:
            for chunk in pool.map_unordered(lambda w, c: w.run.remote(c), chunks):
                if chunk.fatal is not None:
                    raise AudioclfError(f"on Ray worker {chunk.worker}: {chunk.fatal}")
                yield chunk, bar
        except ray.exceptions.RayTaskError as exc:  # our own one-line errors (a full cache disk, ...) stay one line
            if isinstance(exc.cause, AudioclfError | OSError):
                raise exc.cause from None
            raise


def _tally(workers: dict[str, WorkerStats], chunk: ChunkResult, n_items: int) -> None:
    stats = workers.setdefault(chunk.worker, WorkerStats(chunk.worker))
    stats.chunks += 1
    stats.items += n_items
    stats.audio_s += chunk.audio_s
    stats.busy_s += chunk.busy_s
    stats.download_s += chunk.download_s


def embed_on_ray(
    items: Sequence[Item],
    spec: ModelSpec | None,
    precision: Precision,
    cache_dir: Path,
    windows: WindowOptions,
    *,
    fetch: FetchOptions | None = None,
    options: RayOptions = RayOptions(),
    progress: bool = True,
    features: FeatureOptions | None = None,
) -> RayRun:
    """Embed ``items`` into ``cache_dir`` with a pool of Ray actors, one encoder each; with text ``features``
    each actor also fills the transcript cache for the recordings it embedded."""
    started = time.perf_counter()
    result, workers = EmbedResult(n_embedded=0), dict[str, WorkerStats]()

    def make(remote: Any) -> Any:
        return remote(_EmbedActor).remote(spec, precision, str(cache_dir), windows, fetch, features)

    for chunk, bar in _on_pool(items, options, make, "embedding", progress, SLOTS_PER_WORKER):
        result.n_embedded = (result.n_embedded or 0) + chunk.n_embedded
        result.n_cached += chunk.n_cached
        result.n_downloaded += chunk.n_downloaded
        result.audio_s += chunk.audio_s
        result.failures += [Failure(item, reason) for item, reason in chunk.failures]
        _tally(workers, chunk, chunk.n_embedded + len(chunk.failures))
        bar.update(chunk.n_embedded + len(chunk.failures))
    result.seconds = time.perf_counter() - started
    return RayRun(result, sorted(workers.values(), key=lambda w: w.worker))


def fetch_on_ray(
    items: Sequence[Item], fetch: FetchOptions, *, options: RayOptions = RayOptions(), progress: bool = True
) -> RayRun:
    """Download the URL ``items`` into the shared cache with a pool of Ray actors (playlists expand on the
    worker that gets the row)."""
    started = time.perf_counter()
    result, workers, fetched = EmbedResult(n_embedded=0), dict[str, WorkerStats](), list[Resolved]()

    def make(remote: Any) -> Any:
        return remote(_Fetcher).remote(fetch)

    for chunk, bar in _on_pool(items, options, make, "fetching", progress):
        fetched += chunk.fetched
        result.n_downloaded += chunk.n_downloaded
        result.failures += [Failure(r.item, r.error) for r in chunk.fetched if r.error is not None]
        _tally(workers, chunk, len(chunk.fetched))
        bar.update(len({r.row for r in chunk.fetched}))
    result.seconds = time.perf_counter() - started
    return RayRun(result, sorted(workers.values(), key=lambda w: w.worker), fetched)
