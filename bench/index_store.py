"""Which store for the corpus index (issue 29): exact search in numpy (the plain path), usearch (HNSW, Perch's
hoplite design with SQLite beside it for the rows) and LanceDB (Lance files; exact, IVF-PQ and IVF-HNSW-SQ),
on the same vectors, in one run.

    pip install usearch lancedb   # not yet dependencies of audioclf: this bench is how they are chosen
    python bench/index_store.py --sizes 10000 100000 --dim 512

Vectors are synthetic but shaped like window embeddings: about 20 windows per recording scattered around it,
recordings in a low-dimensional latent space; queries are fresh windows of the same recordings. For every store
and size: build seconds, size on disk, single-query latency (p50/p95 over --queries queries, top 10, cosine) and
recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

K = 10


def vectors(n: int, dim: int, seed: int, n_recordings: int) -> np.ndarray:
    """Unit vectors of windows: each recording a point in a 64-dimensional latent space (embeddings have a low
    intrinsic dimension), its windows scattered around it, mapped into ``dim`` dimensions."""
    latent = np.random.default_rng(0).standard_normal((n_recordings, 64)).astype(np.float32)
    mix = np.random.default_rng(1).standard_normal((64, dim)).astype(np.float32) / 8
    rng = np.random.default_rng(seed)
    z = latent[rng.integers(0, n_recordings, n)] + 0.5 * rng.standard_normal((n, 64)).astype(np.float32)
    x = z @ mix + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1)[:, :K]


def disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def timed_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    return np.array(found), times


def numpy_store(base: np.ndarray, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    np.save(folder / "vectors.npy", base)
    stored = np.load(folder / "vectors.npy", mmap_mode="r")
    return lambda q: np.argsort(-(stored @ q))[:K]


def usearch_store(base: np.ndarray, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=16, expansion_add=128)
    index.add(np.arange(len(base)), base, threads=2)
    index.save(str(folder / "hnsw.usearch"))
    view = Index.restore(str(folder / "hnsw.usearch"), view=True)
    view.expansion_search = 64
    return lambda q: view.search(q, K).keys


def lance_store(base: np.ndarray, folder: Path, index_type: str | None) -> Callable[[np.ndarray], np.ndarray]:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(folder))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), base.shape[1])
    table = db.create_table("windows", pa.table({"row": pa.array(np.arange(len(base))), "vector": vec}))
    if index_type is not None:
        partitions = max(1, int(np.sqrt(len(base))))
        options = {"num_sub_vectors": base.shape[1] // 16} if index_type == "IVF_PQ" else {}
        table.create_index(metric="cosine", index_type=index_type, num_partitions=partitions, **options)

    def search(q: np.ndarray) -> np.ndarray:
        query = table.search(q).metric("cosine").limit(K).select(["row", "_distance"])
        if index_type is not None:
            query = query.nprobes(20).refine_factor(5)
        return query.to_arrow()["row"].to_numpy()

    return search


STORES: dict[str, Callable[[np.ndarray, Path], Callable[[np.ndarray], np.ndarray]]] = {
    "numpy exact (plain path)": numpy_store,
    "usearch HNSW": usearch_store,
    "LanceDB exact": lambda b, f: lance_store(b, f, None),
    "LanceDB IVF_PQ": lambda b, f: lance_store(b, f, "IVF_PQ"),
    "LanceDB IVF_HNSW_SQ": lambda b, f: lance_store(b, f, "IVF_HNSW_SQ"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--stores", nargs="+", default=list(STORES), choices=list(STORES))
    args = ap.parse_args()
    print("| windows | store | build s | disk MB | query p50 ms | query p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        recordings = max(50, n // 20)  # about 20 windows per recording
        base, queries = vectors(n, args.dim, 2, recordings), vectors(args.queries, args.dim, 3, recordings)
        truth = exact_top(base, queries)
        for name in args.stores:
            folder = Path(tempfile.mkdtemp(prefix="index-store-"))
            try:
                t0 = time.perf_counter()
                search = STORES[name](base, folder)
                build = time.perf_counter() - t0
                found, times = timed_queries(search, queries)
                recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
                p50, p95 = (1000 * np.percentile(times, p) for p in (50, 95))
                print(
                    f"| {n:,} | {name} | {build:.1f} | {disk_mb(folder):.0f} | {p50:.1f} | {p95:.1f} | {recall:.3f} |"
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
