"""How the corpus index (issue 29) scales: the real store, ANN index and search code, 10k to 1M windows, and the
index's own overhead when building from real audio.

    python bench/index_scale.py --sizes 10000 100000 200000 --tune --audio   # 5-10 minutes on 2 shared cores
    python bench/index_scale.py --sizes 1000000   # 15-20 minutes; the ANN build 6-10 of them (f16, expansion 64)

1. **Scale** (``--sizes``): synthetic 512-d window vectors (``bench/index_store.py``'s generator: about 20
   windows per recording, queries are fresh windows of the same recordings) are committed to a real ``Store`` as
   a build does (``NewRecording`` batches of ``BATCH_RECORDINGS``), then ``update_ann`` builds the HNSW index at
   every size (``ANN_FROM_WINDOWS`` is lowered inside this process only). The index is opened with ``Index`` and
   every query runs through ``rank_exact`` (the plain path) and ``rank_ann``, plain and per recording;
   recall@10 is the ANN's hits against the exact ones for the same query and options. Memory: the peak RSS of
   this process (cumulative over sizes) and of a fresh process that opens the index and searches it
   (exactly, then through the ANN index).
2. **Tune** (``--tune``, at ``--tune-at`` windows): usearch indexes built directly on the same prepared vectors
   with ``f16`` instead of ``f32`` and ``expansion_add`` 64 instead of 128, each searched through ``rank_ann``
   with ``EXPANSION_SEARCH`` 64 (today's) and 256.
3. **Real audio** (``--audio``): ``build_index`` with the built-in encoder over FSDD and ESC-dev, default windows
   and 1 s / 0.5 s, each into a fresh embedding cache: ``BuildSummary.store_s`` against ``embed_s`` (target
   <= 10 %), then a second build of the same sources (adds nothing, embeds nothing).

Tables go to stdout (markdown), progress to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from index_store import disk_mb, vectors

import audioclf.corpus.ann as ann_module
from audioclf.corpus.ann import ANN_NAME, Ann, AnnState, update_ann
from audioclf.corpus.build import BATCH_RECORDINGS, BuildPlan, build_index
from audioclf.corpus.card import IndexCard, write_card
from audioclf.corpus.index import Index
from audioclf.corpus.search import Ranked, SearchOptions, rank_ann, rank_exact, top_hits
from audioclf.corpus.similarity import Similarity, VectorStats, prepare, scores
from audioclf.corpus.store import NewRecording, Store
from audioclf.encoders.loader import load_encoder
from audioclf.io.audio import WindowOptions
from audioclf.io.manifest import Item, audio_files_under, load_manifest

K = 10
WINDOW_S = 10.0  # the synthetic windows' length and hop
CHUNK = 100_000  # synthetic vectors generated at once (bounded memory at 1M)
QUERY_SEED = 3  # index_store's query seed; the windows use 2, 12, 22, ...
OPTIONS = {"plain": SearchOptions(top_k=K), "per recording": SearchOptions(top_k=K, per_recording=True)}
TUNE = [("f32", 128), ("f16", 128), ("f32", 64), ("f16", 64)]  # dtype, expansion_add (ann.py: DTYPE, EXPANSION_ADD)
SEARCH_EXPANSIONS = (64, 256)  # ann.py's EXPANSION_SEARCH (a search uses at least twice the hits wanted)
PROBE_QUERIES = 50
WARMUP = 5
Search = Callable[[np.ndarray], Ranked]
ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over fork and exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ms(times: list[float], p: float) -> float:
    return 1000 * float(np.percentile(times, p))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# --- synthetic corpus -------------------------------------------------------------------------------------------


def synthetic(n: int, dim: int, n_recordings: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` window vectors (``index_store.vectors``, generated in chunks) sorted by the recording each belongs
    to, and those recordings. Which recording a window is comes from the generator's first draw from its seed."""
    seeds = [2 + 10 * i for i in range(-(-n // CHUNK))]
    sizes = [min(CHUNK, n - i * CHUNK) for i in range(len(seeds))]
    recs = np.concatenate(
        [np.random.default_rng(s).integers(0, n_recordings, m) for s, m in zip(seeds, sizes, strict=True)]
    )
    order = np.argsort(recs, kind="stable")
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    base = np.empty((n, dim), dtype=np.float32)
    for i, (seed, m) in enumerate(zip(seeds, sizes, strict=True)):
        base[where[i * CHUNK : i * CHUNK + m]] = vectors(m, dim, seed, n_recordings)
    recs = recs[order]
    check_grouping(base, recs)
    return base, recs


def check_grouping(base: np.ndarray, recs: np.ndarray) -> None:
    """A window is nearer its own recording's other windows than the next recording's (else the assignment of
    windows to recordings above no longer matches the generator)."""
    own, other = [], []
    for (a, b), (c, d) in itertools.pairwise(spans(recs)[:201]):
        if b - a > 1:
            own.append(float(base[a] @ base[a + 1 : b].mean(axis=0)))
            other.append(float(base[a] @ base[c:d].mean(axis=0)))
    if not own or np.mean(own) < np.mean(other) + 0.1:
        raise SystemExit(f"synthetic windows do not cluster by recording ({np.mean(own):.2f} vs {np.mean(other):.2f})")


def spans(recs: np.ndarray) -> list[tuple[int, int]]:
    """Where each recording's windows start and end in the sorted ``recs``."""
    starts = np.flatnonzero(np.r_[True, recs[1:] != recs[:-1]])
    return list(zip(starts.tolist(), np.r_[starts[1:], len(recs)].tolist(), strict=True))


def new_recordings(base: np.ndarray, recs: np.ndarray) -> Iterator[NewRecording]:
    for a, b in spans(recs):
        t = np.arange(b - a, dtype=np.float64) * WINDOW_S
        r = int(recs[a])
        yield NewRecording(f"synthetic-{r}", f"synthetic/{r}.wav", str(r), None, t, t + WINDOW_S, base[a:b])


@contextmanager
def patched(name: str, value: int) -> Iterator[None]:
    """A setting of ``ann.py`` changed in this process only (the ANN index at any size; a wider search)."""
    old = getattr(ann_module, name)
    setattr(ann_module, name, value)
    try:
        yield
    finally:
        setattr(ann_module, name, old)


# --- scale --------------------------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    n: int
    n_recordings: int
    insert_s: float
    ann_s: float
    sqlite_mb: float
    usearch_mb: float
    load_s: float = 0.0
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # mode -> exact/ann -> seconds
    recall: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    probes: dict[str, dict[str, float]] = field(default_factory=dict)
    load_avg: float = 0.0
    tune: list[list[str]] = field(default_factory=list)


def build_store(folder: Path, n: int, dim: int, similarity: Similarity) -> SizeResult:
    n_recordings = max(50, n // 20)
    log(f"{n:,} windows: generating")
    base, recs = synthetic(n, dim, n_recordings)
    folder.mkdir(parents=True)
    card = IndexCard("synthetic", "synthetic", 0, 1, dim, WindowOptions(WINDOW_S, WINDOW_S), similarity)
    write_card(folder, card)
    store = Store(folder, create=True)
    try:
        log(f"{n:,} windows: inserting")
        t0 = time.perf_counter()
        batch: list[NewRecording] = []
        for rec in new_recordings(base, recs):
            batch.append(rec)
            if len(batch) == BATCH_RECORDINGS:
                store.add(batch)
                batch = []
        store.add(batch)
        insert_s = time.perf_counter() - t0
        del base, batch
        log(f"{n:,} windows: inserted in {insert_s:.1f} s; building the ANN index")
        t0 = time.perf_counter()
        with patched("ANN_FROM_WINDOWS", 0):  # a fresh graph: update_ann takes the statistics it needs itself
            if not update_ann(folder, store, dim, similarity):
                raise SystemExit("update_ann built no index")
        ann_s = time.perf_counter() - t0
    finally:
        store.close()  # checkpoints the WAL into the database file
    usearch_mb = (folder / ANN_NAME).stat().st_size / 1e6
    sqlite_mb = disk_mb(folder) - usearch_mb  # the database, and a few bytes of index.json and ann.json
    log(f"{n:,} windows: ANN index built in {ann_s:.1f} s")
    return SizeResult(n, len(np.unique(recs)), insert_s, ann_s, sqlite_mb, usearch_mb)


def timed(search: Search, queries: list[np.ndarray]) -> tuple[list[Ranked], list[float]]:
    """Every query's hits and seconds (after a few untimed ones: caches, BLAS threads)."""
    for q in queries[:WARMUP]:
        search(q)
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    return found, times


def by_exact(ids: np.ndarray, recordings: np.ndarray, prepared: np.ndarray, options: SearchOptions) -> Search:
    return lambda q: rank_exact(ids, recordings, prepared, q, None, options)


def by_ann(ann: Ann, index: Index, options: SearchOptions) -> Search:
    n_recordings, n_windows = index.store.counts()  # as Index passes them: how deep one hit per recording looks
    per = n_windows / max(1, n_recordings)
    return lambda q: rank_ann(ann, index._recordings_of, q, None, options, (), per)


def ranking_times(
    ids: np.ndarray, recordings: np.ndarray, prepared: np.ndarray, queries: list[np.ndarray], options: SearchOptions
) -> list[float]:
    """Seconds of ``top_hits`` alone: the part of an exact search after the scores' matrix product."""
    times = []
    for q in queries:
        s = scores(prepared, q)
        t0 = time.perf_counter()
        top_hits(ids, recordings, s, options)
        times.append(time.perf_counter() - t0)
    return times


def recall(found: list[Ranked], truth: list[Ranked]) -> float:
    hits = sum(len(set(f.window_ids.tolist()) & set(t.window_ids.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (K * len(truth))


def prepared_queries(n_queries: int, dim: int, n_recordings: int, similarity: Similarity, stats: VectorStats | None):
    return [prepare(q[None], similarity, stats) for q in vectors(n_queries, dim, QUERY_SEED, n_recordings)]


def open_ann(index: Index) -> Ann:
    opened = index._ann()
    if opened is None:
        raise SystemExit(f"{index.folder}: the ANN index does not cover the store")
    return opened[0]


def search_size(result: SizeResult, folder: Path, n_queries: int, dim: int, tune: bool) -> None:
    index = Index(folder)
    try:
        t0 = time.perf_counter()
        ids, recordings, prepared, stats = index._exact  # what Index loads for its first exact search
        result.load_s = time.perf_counter() - t0
        ann = open_ann(index)
        queries = prepared_queries(n_queries, dim, max(50, result.n // 20), index.card.similarity, stats)
        log(f"{result.n:,} windows: exact search loaded in {result.load_s:.1f} s; {len(queries)} queries")
        exact: dict[str, list[Ranked]] = {}
        for mode, options in OPTIONS.items():
            exact[mode], exact_times = timed(by_exact(ids, recordings, prepared, options), queries)
            found, ann_times = timed(by_ann(ann, index, options), queries)
            sort_times = ranking_times(ids, recordings, prepared, queries, options)
            result.times[mode] = {"exact": exact_times, "ann": ann_times, "top_hits": sort_times}
            result.recall[mode] = recall(found, exact[mode])
        if tune:
            result.tune = tune_ann(index, ids, prepared, stats, queries, exact, folder.parent / f"tune-{result.n}")
    finally:
        index.close()


def tune_ann(
    index: Index,
    ids: np.ndarray,
    prepared: np.ndarray,
    stats: VectorStats | None,
    queries: list[np.ndarray],
    exact: dict[str, list[Ranked]],
    folder: Path,
) -> list[list[str]]:
    """usearch indexes with other settings on the same prepared vectors, searched like the product's."""
    from usearch.index import Index as Usearch

    rows = []
    for dtype, expansion in TUNE:
        sub = folder / f"{dtype}-{expansion}"
        sub.mkdir(parents=True)
        log(f"tune: {dtype}, expansion_add {expansion}")
        t0 = time.perf_counter()
        hnsw = Usearch(
            ndim=prepared.shape[1],
            metric="ip",
            dtype=dtype,
            connectivity=ann_module.CONNECTIVITY,
            expansion_add=expansion,
        )
        for start in range(0, len(ids), ann_module.BATCH):
            end = start + ann_module.BATCH
            hnsw.add(ids[start:end], prepared[start:end], threads=os.cpu_count() or 1)
        hnsw.save(str(sub / ANN_NAME))
        build_s = time.perf_counter() - t0
        ann = Ann(sub, AnnState(int(ids[-1]), len(hnsw), index.card.similarity, stats, len(ids)))
        del hnsw
        for search in SEARCH_EXPANSIONS:
            row = [dtype, str(expansion), str(search), f"{build_s:.1f}", f"{(sub / ANN_NAME).stat().st_size / 1e6:.0f}"]
            for mode, options in OPTIONS.items():
                with patched("EXPANSION_SEARCH", search):
                    found, times = timed(by_ann(ann, index, options), queries)
                row += [f"{ms(times, 50):.2f}", f"{recall(found, exact[mode]):.3f}"]
            rows.append(row)
        shutil.rmtree(sub, ignore_errors=True)
    return rows


def probe(folder: Path, mode: str, dim: int) -> dict[str, float]:
    """In a fresh process: open the index as ``Index`` does and search it (``mode``: exact or ann)."""
    index = Index(folder)
    n_recordings = max(50, len(index) // 20)
    t0 = time.perf_counter()
    plain = OPTIONS["plain"]
    if mode == "exact":
        ids, recordings, prepared, stats = index._exact  # what Index loads for its first exact search
        search = by_exact(ids, recordings, prepared, plain)
    else:
        ann = open_ann(index)
        stats, search = ann.state.stats, by_ann(ann, index, plain)
    load_s = time.perf_counter() - t0
    _, times = timed(search, prepared_queries(PROBE_QUERIES, dim, n_recordings, index.card.similarity, stats))
    return {"rss_mb": rss_mb(), "load_s": load_s, "p50_ms": ms(times, 50)}


def run_probe(folder: Path, mode: str, dim: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--probe", mode, str(folder), "--dim", str(dim)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        log(f"the fresh {mode} process failed:\n{done.stderr[-3000:]}")
        return {"rss_mb": float("nan"), "load_s": float("nan"), "p50_ms": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale(args: argparse.Namespace, workdir: Path) -> list[SizeResult]:
    results = []
    for n in args.sizes:
        folder = workdir / f"index-{n}"
        result = build_store(folder, n, args.dim, Similarity(args.similarity))
        for mode in ("exact", "ann"):
            log(f"{n:,} windows: fresh process, {mode} search")
            result.probes[mode] = run_probe(folder, mode, args.dim)
        search_size(result, folder, args.queries, args.dim, args.tune and n == args.tune_at)
        result.peak_rss_mb = rss_mb()
        result.load_avg = os.getloadavg()[0]
        results.append(result)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def scale_tables(results: list[SizeResult], similarity: str) -> str:
    build = [
        [
            f"{r.n:,}",
            f"{r.n_recordings:,}",
            f"{r.insert_s:.1f}",
            f"{r.n / r.insert_s:,.0f}",
            f"{r.ann_s:.1f}",
            f"{r.sqlite_mb:.0f}",
            f"{r.usearch_mb:.0f}",
            f"{r.sqlite_mb + r.usearch_mb:.0f}",
            f"{r.load_avg:.1f}",
        ]
        for r in results
    ]
    query = [
        [
            f"{r.n:,}",
            mode,
            f"{ms(r.times[mode]['exact'], 50):.1f}",
            f"{ms(r.times[mode]['exact'], 95):.1f}",
            f"{ms(r.times[mode]['top_hits'], 50):.1f}",
            f"{ms(r.times[mode]['ann'], 50):.2f}",
            f"{ms(r.times[mode]['ann'], 95):.2f}",
            f"{r.recall[mode]:.3f}",
        ]
        for r in results
        for mode in OPTIONS
    ]
    memory = [
        [
            f"{r.n:,}",
            f"{r.load_s:.1f}",
            f"{r.peak_rss_mb:,.0f}",
            f"{r.probes['exact']['rss_mb']:,.0f}",
            f"{r.probes['exact']['load_s']:.1f}",
            f"{r.probes['exact']['p50_ms']:.1f}",
            f"{r.probes['ann']['rss_mb']:,.0f}",
            f"{r.probes['ann']['load_s']:.2f}",
            f"{r.probes['ann']['p50_ms']:.2f}",
        ]
        for r in results
    ]
    parts = [
        f"Build (synthetic 512-d windows, {similarity}; insert = Store.add in batches of {BATCH_RECORDINGS} "
        "recordings; ANN = update_ann from the store; disk after close)",
        table(
            [
                "windows",
                "recordings",
                "insert s",
                "windows/s",
                "ANN build s",
                "sqlite MB",
                "usearch MB",
                "disk MB",
                "load avg",
            ],
            build,
        ),
        f"Queries (one example, top {K}; exact = rank_exact over the prepared vectors in memory, ANN = rank_ann; "
        "recall@10 of the ANN hits against the exact hits)",
        table(
            [
                "windows",
                "mode",
                "exact p50 ms",
                "exact p95 ms",
                "of which top_hits p50 ms",
                "ANN p50 ms",
                "ANN p95 ms",
                "recall@10",
            ],
            query,
        ),
        "Memory (peak RSS; a fresh process opens the index with Index and runs "
        f"{PROBE_QUERIES} plain queries; exact load = SQLite vectors read and prepared)",
        table(
            [
                "windows",
                "exact load s",
                "bench peak RSS MB",
                "fresh exact RSS MB",
                "its load s",
                "its p50 ms",
                "fresh ANN RSS MB",
                "its open s",
                "its p50 ms",
            ],
            memory,
        ),
    ]
    for r in results:
        if r.tune:
            parts += [
                f"ANN settings at {r.n:,} windows (ann.py: {ann_module.DTYPE}, expansion_add "
                f"{ann_module.EXPANSION_ADD}, expansion_search {ann_module.EXPANSION_SEARCH}; connectivity "
                f"{ann_module.CONNECTIVITY}; usearch built directly on "
                "the prepared vectors, searched with rank_ann; expansion_search is ann.py's EXPANSION_SEARCH: a "
                "search uses max(it, 2 x the candidates wanted))",
                table(
                    [
                        "dtype",
                        "expansion_add",
                        "expansion_search",
                        "build s",
                        "disk MB",
                        "plain p50 ms",
                        "plain recall@10",
                        "per-rec p50 ms",
                        "per-rec recall@10",
                    ],
                    r.tune,
                ),
            ]
    return "\n\n".join(parts)


# --- real audio ---------------------------------------------------------------------------------------------------


def audio_sources(fsdd: Path, esc: Path) -> dict[str, list[Item]]:
    """FSDD (``{digit}_{speaker}_{take}.wav``, grouped by speaker) and ESC-dev (its manifest)."""
    digits = [
        Item(str(f.resolve()), f.stem.split("_")[0], None, f.stem.split("_")[1], str(f))
        for f in audio_files_under(fsdd)
    ]
    return {"fsdd": digits, "esc-dev": load_manifest(esc / "manifest.csv")}


def build_overhead(args: argparse.Namespace, workdir: Path) -> str:
    encoder = load_encoder("builtin").encoder
    rows = []
    for name, items in audio_sources(args.fsdd, args.esc).items():
        for windows in (WindowOptions(), WindowOptions(1.0, 0.5)):
            label = f"{windows.window_s:g} s / {windows.hop_s:g} s"
            out = workdir / f"audio-{name}-{windows.window_s:g}-{windows.hop_s:g}"
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=workdir))  # fresh: every window is embedded
            plan = BuildPlan(encoder, windows, encoder.n_layers - 1, cache, Similarity(args.similarity), progress=False)
            log(f"audio: {name}, windows {label}")
            first = build_index(items, out, plan)
            again = build_index(items, out, plan)
            rows.append(
                [
                    name,
                    label,
                    f"{first.n_recordings:,}",
                    f"{first.n_windows:,}",
                    str(len(first.failures)),
                    f"{first.embed_s:.1f}",
                    f"{first.store_s:.2f}",
                    f"{100 * first.store_s / first.embed_s:.1f} %",
                    f"{first.seconds:.1f}",
                    f"{again.seconds:.2f}",
                    f"{again.n_new} / {again.n_windows_added}",
                    f"{again.embed_s:.2f}",
                ]
            )
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
    return "\n\n".join(
        [
            f"Build overhead on real audio (built-in encoder, fresh embedding cache, {args.similarity}; "
            "store s = BuildSummary.store_s: commits and ANN update)",
            table(
                [
                    "sources",
                    "windows",
                    "recordings",
                    "windows",
                    "failed",
                    "embed s",
                    "store s",
                    "store / embed",
                    "build s",
                    "2nd build s",
                    "2nd added rec / win",
                    "2nd embed s",
                ],
                rows,
            ),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="windows; none: skip scale")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--similarity", choices=[s.value for s in Similarity], default=Similarity.COSINE.value)
    ap.add_argument("--tune", action="store_true", help="also other usearch settings at --tune-at windows")
    ap.add_argument("--tune-at", type=int, default=100_000)
    ap.add_argument("--audio", action="store_true", help="also the build overhead on real audio")
    ap.add_argument("--fsdd", type=Path, default=ROOT.parent / "shared/data/fsdd/recordings")
    ap.add_argument("--esc", type=Path, default=ROOT.parent / "shared/data/esc-dev")
    ap.add_argument("--workdir", type=Path, default=None, help="where the indexes are built (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the indexes")
    ap.add_argument("--probe", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe(Path(args.probe[1]), args.probe[0], args.dim)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="index-scale-", dir=args.workdir))
    try:
        out = []
        if args.sizes:
            out.append(scale_tables(scale(args, workdir), args.similarity))
        if args.audio:
            out.append(build_overhead(args, workdir))
        print("\n\n".join(out))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
