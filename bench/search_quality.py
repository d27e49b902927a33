"""Which similarity should corpus search use by default? Measured on labelled sets (issue 29, "Scores that mean
something"), with the library's own functions (``audioclf.corpus.similarity``), beside plain cosine.

    .venv/bin/python bench/search_quality.py                      # everything; cached after (then ~3 min)
    .venv/bin/python bench/search_quality.py --encoders builtin   # the fast part only (a minute or two)

The first full run embeds 3,084 Whisper windows at 0.4-0.6 s each on 2 idle cores (~25-30 min; it took about an
hour on 2 cores shared with other work); the builtin encoder takes a minute. Chance mAP is about 0.10 (FSDD),
0.08 (ESC), 0.07 (ESC fold 1) and 0.24 (topics).

Sets: FSDD digits (label digit, group speaker), the real environmental sounds in ``../shared/data/esc-dev``
(label class, group Freesound source recording) and the espeak-ng spoken topics of ``bench/spoken_topics.py``
(label topic, group passage). Encoders: ``builtin``, and Whisper base in Hugging Face format (built offline
with ``../shared/tools/whisper_base_hf.py``), read at its last and at its middle layer (``n_layers // 2``).
Windows: the default 10 s (one window per short clip) and, for ESC's 5 s clips, 1 s windows with a 0.5 s hop
(nine windows a clip). Whisper pads every window to 30 s, so it costs the same per window whatever its length:
its ESC 1 s run is limited to the official folds given by ``--whisper-esc-1s-folds`` (default 1: 104 clips).

The index is all of a set's windows and ``VectorStats`` are taken over all of them (the index's own statistics).

- **One recording as the query** (every recording of the set in turn): its windows are the positive examples
  (``Combine.MEAN``); every window of every recording of *another group* is scored with ``scores``; a
  recording scores its best window; relevant = same label. Precision@10 and average precision, meaned over the
  queries.
- **Several examples**: ``--queries`` queries (fixed ``--seed``) of 3 and 5 example recordings of one label,
  drawn from one group where every label has groups that large (FSDD: one speaker), else one from each of k
  random groups; ranked over the recordings of the groups not used by the query. ``Combine.MEAN`` against
  ``Combine.MAX`` over every window of every example (what ``scores`` does with all the examples' windows)
  and, where a recording has several windows, ``max of examples``: ``Combine.MAX`` over one direction per
  example (the ``combined`` mean of its windows); and with 3 recordings of 3 other labels (from the positives'
  group where possible) as ``negatives``. The same queries for every similarity and combine.

``mAP 95 %`` is a bootstrap over queries; ``Δ mAP`` is paired (same queries) against the row it names: cosine
for the similarity, mean for max, no negatives for negatives. Queries of one set share speakers and sources, so
the intervals are narrower than a resampling of groups would give: read small differences as ties.
Embeddings are cached under ``--work`` (default /tmp/search-quality), so a rerun only scores (seconds).
The table is printed and written to ``--out`` (default /tmp/search_quality.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from probe_vs_logreg import fsdd_items, topic_items

from audioclf.corpus.similarity import Combine, Similarity, VectorStats, combined, prepare, scores
from audioclf.encoders.loader import load_encoder
from audioclf.extraction.embed import embed_items
from audioclf.fitting.data import stack
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import Item, load_manifest

SIMILARITIES = (Similarity.COSINE, Similarity.CENTERED, Similarity.STANDARDIZED)
DEFAULT_WINDOWS = WindowOptions()
SHORT_WINDOWS = WindowOptions(window_s=1.0, hop_s=0.5)
N_NEGATIVES = 3
N_BOOT = 1000
MAX_OF_EXAMPLES = "max of examples"


@dataclass
class View:
    """One set embedded by one encoder at one layer: the raw vectors of every window, in recording order."""

    set_name: str
    encoder: str
    windows: str
    x: np.ndarray  # [n_windows, dim]
    rec: np.ndarray  # [n_windows] recording index
    labels: np.ndarray  # [n_recordings]
    groups: np.ndarray  # [n_recordings]
    starts: np.ndarray = field(init=False)  # first window of each recording
    ends: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.labels)
        self.starts = np.searchsorted(self.rec, np.arange(n), side="left")
        self.ends = np.searchsorted(self.rec, np.arange(n), side="right")

    def windows_of(self, prepared: np.ndarray, recordings: list[int] | np.ndarray) -> np.ndarray:
        return np.concatenate([prepared[self.starts[r] : self.ends[r]] for r in recordings])


@dataclass(frozen=True)
class Query:
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    label: str
    excluded_groups: frozenset[str]


@dataclass
class Row:
    set_name: str
    encoder: str
    windows: str
    similarity: Similarity
    combine: str  # a Combine, or "max of examples" (max over each example's mean window direction)
    examples: str
    p10: np.ndarray  # per query
    ap: np.ndarray  # per query
    versus: dict[str, Row] = field(default_factory=dict)  # paired comparisons: "cosine", "mean" or "no neg"


# ---------------------------------------------------------------------------------------------- data and embedding


def esc_items(folder: Path, folds: set[str] | None = None) -> list[Item]:
    items = load_manifest(folder / "manifest.csv")
    return [i for i in items if folds is None or Path(i.source).name.split("-")[0] in folds]


def whisper_hf_folder(folder: Path) -> Path:
    if not (folder / "model.safetensors").exists():
        tool = Path(__file__).resolve().parents[2] / "shared" / "tools" / "whisper_base_hf.py"
        subprocess.run([sys.executable, str(tool), str(folder)], check=True)
    return folder


def embed_views(
    items: list[Item], spec: str, windows: WindowOptions, cache_dir: Path, set_name: str, window_name: str
) -> list[View]:
    """Every layer the encoder caches is embedded once; the views are its last layer and, for a deep encoder,
    its middle one."""
    encoder = load_encoder(spec, "auto").encoder
    started = time.perf_counter()
    cache = EmbeddingCache(cache_dir, encoder.identity, windows)
    result = embed_items(items, encoder, cache, windows, progress=False)
    data = stack(result.embedded, sorted({item.label or "" for item, _ in result.embedded}))
    x = data.x.numpy()
    print(
        f"{set_name} / {spec} / {window_name}: {result.summary()}, {len(x)} windows, "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    labels = np.array([item.label for item in data.items])
    groups = np.array([item.group for item in data.items])
    name = "builtin" if spec == "builtin" else "whisper-base"
    layers = [(x.shape[1] - 1, "last")] + ([(x.shape[1] // 2, "mid")] if x.shape[1] > 2 else [])
    return [
        View(set_name, f"{name} {where} ({layer})" if x.shape[1] > 1 else name, window_name,
             np.ascontiguousarray(x[:, layer]), data.recording, labels, groups)
        for layer, where in layers
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------------- metrics


def ranking(rec_scores: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """Precision@10 and average precision of one ranking (candidates only)."""
    order = np.argsort(-rec_scores, kind="stable")
    hits = relevant[order]
    n_rel = int(hits.sum())
    p10 = float(hits[:10].mean())
    if n_rel == 0:
        return p10, float("nan")
    cum = np.cumsum(hits)
    ap = float((cum[hits] / (np.flatnonzero(hits) + 1)).sum() / n_rel)
    return p10, ap


def rank_recordings(view: View, window_scores: np.ndarray, candidates: np.ndarray, label: str) -> tuple[float, float]:
    best = np.maximum.reduceat(window_scores, view.starts)  # a recording scores its best window
    return ranking(best[candidates], view.labels[candidates] == label)


def bootstrap(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (N_BOOT, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------------- queries


def one_recording_rows(view: View, prepared: dict[Similarity, np.ndarray]) -> list[Row]:
    rows = []
    for similarity, w in prepared.items():
        p10, ap = [], []
        for r in range(len(view.labels)):
            candidates = view.groups != view.groups[r]
            if not (view.labels[candidates] == view.labels[r]).any():
                continue
            s = scores(w, view.windows_of(w, [r]), combine=Combine.MEAN)
            result = rank_recordings(view, s, candidates, view.labels[r])
            p10.append(result[0])
            ap.append(result[1])
        rows.append(Row(view.set_name, view.encoder, view.windows, similarity, "mean", "1 recording",
                        np.array(p10), np.array(ap)))  # fmt: skip
    return rows


def draw_queries(view: View, k: int, n: int, seed: int) -> tuple[list[Query], str]:
    """``n`` queries of ``k`` positive recordings of one label (one group where every label has groups of
    ``k``, else ``k`` groups, from the labels that have more than ``k``) and ``N_NEGATIVES`` recordings of
    other labels."""
    rng = np.random.default_rng(seed)
    labels = sorted(set(view.labels))
    by = {(lab, g): np.flatnonzero((view.labels == lab) & (view.groups == g)) for lab, g in
          sorted(set(zip(view.labels, view.groups, strict=True)))}  # fmt: skip
    big = {lab: [g for (lb, g), recs in by.items() if lb == lab and len(recs) >= k] for lab in labels}
    one_group = all(big[lab] for lab in labels)
    if not one_group:  # a label needs k groups for the query and one more to be found in
        labels = [lab for lab in labels if sum(lb == lab for lb, _ in by) > k]
    queries = []
    while len(queries) < n:
        label = labels[rng.integers(len(labels))]
        if one_group:
            g = big[label][rng.integers(len(big[label]))]
            positives = rng.choice(by[(label, g)], k, replace=False)
            pool = np.flatnonzero((view.groups == g) & (view.labels != label))
        else:
            own = sorted({g for (lb, g) in by if lb == label})
            chosen = rng.choice(len(own), k, replace=False)
            positives = np.array([rng.choice(by[(label, own[c])]) for c in chosen])
            pool = np.flatnonzero(view.labels != label)
        other = sorted(set(view.labels[pool]))
        negatives = [rng.choice(pool[view.labels[pool] == lab]) for lab in rng.choice(other, N_NEGATIVES, False)]
        excluded = frozenset(view.groups[np.concatenate([positives, negatives])])
        if (view.labels[~np.isin(view.groups, list(excluded))] == label).any():
            queries.append(Query(tuple(int(p) for p in positives), tuple(int(q) for q in negatives), label, excluded))
    return queries, "1 group" if one_group else f"{k} groups"


def example_vectors(view: View, w: np.ndarray, recordings: tuple[int, ...], per_example: bool) -> np.ndarray:
    """Every window of the example recordings, or (``per_example``) one direction per recording: the library's
    mean of its windows."""
    if not per_example:
        return view.windows_of(w, recordings)
    return np.concatenate([combined(view.windows_of(w, [r]), Combine.MEAN) for r in recordings])


def multi_rows(view: View, prepared: dict[Similarity, np.ndarray], n: int, seed: int) -> list[Row]:
    rows = []
    combines = [("mean", Combine.MEAN, False), ("max", Combine.MAX, False)]
    if (view.ends - view.starts).max() > 1:  # several windows a recording: max over windows != max over examples
        combines.append((MAX_OF_EXAMPLES, Combine.MAX, True))
    for k, negatives in ((3, False), (3, True), (5, False)):
        queries, how = draw_queries(view, k, n, seed + k)
        for similarity, w in prepared.items():
            for name, combine, per_example in combines:
                p10, ap = [], []
                for q in queries:
                    candidates = ~np.isin(view.groups, list(q.excluded_groups))
                    neg = example_vectors(view, w, q.negatives, per_example) if negatives else None
                    s = scores(w, example_vectors(view, w, q.positives, per_example), neg, combine=combine)
                    result = rank_recordings(view, s, candidates, q.label)
                    p10.append(result[0])
                    ap.append(result[1])
                examples = f"{k} ({how})" + (f" + {N_NEGATIVES} neg" if negatives else "")
                rows.append(Row(view.set_name, view.encoder, view.windows, similarity, name, examples,
                                np.array(p10), np.array(ap)))  # fmt: skip
    return rows


def evaluate(view: View, n_queries: int, seed: int) -> list[Row]:
    stats = VectorStats.of(view.x)  # the index's own statistics: all of the set's windows
    prepared = {s: prepare(view.x, s, stats) for s in SIMILARITIES}
    rows = one_recording_rows(view, prepared) + multi_rows(view, prepared, n_queries, seed)
    # paired: a similarity against cosine; max against mean; negatives against the same queries without them
    key = {(r.similarity, r.combine, r.examples): r for r in rows}
    for r in rows:
        if r.similarity is not Similarity.COSINE:
            r.versus["cosine"] = key[(Similarity.COSINE, r.combine, r.examples)]
        if r.examples.endswith(" neg"):
            r.versus["no neg"] = key[(r.similarity, r.combine, r.examples.split(" + ")[0])]
        elif r.combine != "mean":
            r.versus["mean"] = key[(r.similarity, "mean", r.examples)]
    return rows


# ------------------------------------------------------------------------------------------------------- report


def delta(row: Row, against: tuple[str, ...]) -> str:
    out = []
    for name in against:
        if name in row.versus:
            d = row.ap - row.versus[name].ap
            lo, hi = bootstrap(d)
            mark = "**" if lo > 0 or hi < 0 else ""
            out.append(
                f"{mark}{d.mean():+.3f}{mark} [{lo:+.3f}, {hi:+.3f}]" + (f" vs {name}" if len(against) > 1 else "")
            )
    return "".join(out)


def table(rows: list[Row]) -> str:
    lines = [
        "| set | encoder / layer | windows | similarity | combine | examples | P@10 | mAP | mAP 95 % |"
        " Δ mAP vs cosine | Δ mAP vs mean / no neg | n queries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = bootstrap(r.ap)
        lines.append(
            f"| {r.set_name} | {r.encoder} | {r.windows} | {r.similarity} | {r.combine} | {r.examples} | "
            f"{r.p10.mean():.3f} | {r.ap.mean():.3f} | [{lo:.3f}, {hi:.3f}] | {delta(r, ('cosine',))} | "
            f"{delta(r, ('mean', 'no neg'))} | {len(r.ap)} |"
        )
    return "\n".join(lines)


def tally(rows: list[Row]) -> str:
    """How often each choice is better / tied / worse than what it is compared with (paired 95 % intervals)."""
    counts: dict[str, list[int]] = {}
    for r in rows:
        for name, other in r.versus.items():
            what = {
                "cosine": f"{r.similarity} vs cosine ({'1 recording' if r.examples == '1 recording' else 'several'})",
                "mean": f"{r.combine} vs mean ({r.similarity})",
                "no neg": f"negatives vs none ({r.similarity}, {r.combine})",
            }[name]
            lo, hi = bootstrap(r.ap - other.ap)
            c = counts.setdefault(what, [0, 0, 0])
            c[0 if lo > 0 else 2 if hi < 0 else 1] += 1
    return "\n".join(f"- {what}: better {b}, tied {t}, worse {w}" for what, (b, t, w) in sorted(counts.items()))


def views(args: argparse.Namespace) -> Iterator[View]:
    cache = args.work / "cache"
    sets = {
        "fsdd": lambda: fsdd_items(args.fsdd, "digits"),
        "esc": lambda: esc_items(args.esc),
        "topics": lambda: topic_items(args.work),
    }
    for enc in args.encoders:
        spec = "builtin" if enc == "builtin" else f"hf:{whisper_hf_folder(args.work / 'whisper-base-hf')}"
        for name in args.sets:
            yield from embed_views(sets[name](), spec, DEFAULT_WINDOWS, cache, name, "10 s")
            if name == "esc":
                folds = set(args.whisper_esc_1s_folds) if enc != "builtin" else None
                window_name = "1 s / 0.5 s" + (f" (folds {','.join(sorted(folds))})" if folds else "")
                yield from embed_views(esc_items(args.esc, folds), spec, SHORT_WINDOWS, cache, name, window_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--esc", type=Path, default=Path("../shared/data/esc-dev"))
    parser.add_argument("--sets", nargs="+", default=["fsdd", "esc", "topics"], choices=["fsdd", "esc", "topics"])
    parser.add_argument("--encoders", nargs="+", default=["builtin", "whisper"], choices=["builtin", "whisper"])
    parser.add_argument("--whisper-esc-1s-folds", nargs="+", default=["1"])
    parser.add_argument("--queries", type=int, default=300, help="multi-example queries per k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/search-quality"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/search_quality.md"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for view in views(args):
        started = time.perf_counter()
        rows += evaluate(view, args.queries, args.seed)
        print(f"  scored {view.encoder} in {time.perf_counter() - started:.0f} s", flush=True)
    text = f"{table(rows)}\n\nPaired 95 % intervals over all configurations:\n\n{tally(rows)}\n"
    print("\n" + text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
