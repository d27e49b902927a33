"""Does active learning pay? ``suggest``'s strategies against ``random`` with a simulated labeller (issue 30, "Does it
work? A benchmark, not a belief").

    .venv/bin/python bench/active_learning.py                                   # FSDD, ESC, topics: 2 seeds, to 100
    .venv/bin/python bench/active_learning.py --budget 300 --seeds 0 1 2 3 4    # to 300 (docs/active_learning.png)
    .venv/bin/python bench/active_learning.py --rare --budget 200 --seeds 0 1 2 3 4 5 6 7 8 9   # one rare class
    .venv/bin/python bench/active_learning.py --sets esc --folds 2 --seeds 0    # a smoke test

On 2 shared cores a run of one strategy, fold and seed takes 0.5-1 s to 100 labels and 3-5 s to 300. Measured: the
default run 50 s (96 runs); ``--budget 300 --seeds 0 1 2 3 4`` 13 min (240 runs, ESC's 100 of them 7.7 min, FSDD's
60 3.7 min); ``--rare --budget 200`` with 10 seeds 11 min (320 runs). The index builds, once, take about a minute
and are kept under ``--work`` (``--sets``, ``--folds N`` and fewer ``--seeds`` make any run shorter). A pool
smaller than the budget is labelled whole and the run stops there.

Sets (``--sets``), each one corpus index built with the builtin encoder (its native windows, the default
``standardized`` similarity, so its statistics are taken over every window, held-out ones included: unlabelled
audio a user would have indexed too):

- ``fsdd``: FSDD digits (label digit, group speaker; three speakers, so leave one speaker out: 3 folds;
  1,000 pool windows a fold).
- ``esc``: the real environmental sounds of ``../shared/data/esc-dev`` (13 classes, group Freesound source
  recording, its 5 official folds; 416 pool windows a fold).
- ``topics``: the espeak-ng spoken topics of ``bench/spoken_topics.py`` (4 topics, 16 passages each, each
  passage spoken twice by voices chosen independently of the topic; group passage). Four grouped folds: passage
  0-7 / 8-15 and even / odd (a passage's two renditions on the same side; chosen so each fold hears every voice
  once per topic, see ``topic_fold``), so 96 pool windows a fold: the budget stops there.
  This is a hard case on purpose: the builtin encoder's vectors are acoustic (MFCC and general-audio
  statistics), and a topic is *what is said*, not how it sounds; they mostly carry the voice. Expect every
  strategy near chance (0.25) and no strategy to help much: active learning cannot find a signal the vectors
  lack (the transcript features of ``train --features transcript`` are the fix there, not a strategy).

The labels in the index come from the manifests, so the simulated labeller answers every window with
``row.label``: it is never wrong.

For each fold, seed and strategy: a fresh labels log (``audioclf.annotation.labels.Labels``) is bound to the
index. The held-out fold's windows are *leased* to another annotator (``held-out``) for 30 years, so
``suggest(..., annotator="sim")`` never hands them out (a lease is exactly how the library keeps a window from a
reviewer; nothing is written about them as an answer, so they never enter the quick model's training set).
One window per class is then labelled, drawn at random from the pool (seeded), and each round asks
``suggest(index, labels, n, strategy, annotator="sim", seed=...)`` for 10 windows (the first round tops the count
up to a multiple of 10), labels them with the truth, and scores ``QuickModel`` fitted on the labelled windows'
prepared vectors (what ``suggest`` itself fits) on the held-out recordings (mean of a recording's window
probabilities; accuracy and macro-F1). ``ceiling`` is the same model on the whole pool labelled.

**Rare class** (``--rare``; FSDD and ESC; strategies ``top:rare``, diverse, margin, random by default): one class
is made rare in the pool: all but a few of its pool windows are leased away too (``dropped``), so it is about
``--rare-share`` (2.5 %) of the pool (FSDD: 23 of 923 windows; ESC: 10 of 394); the held-out fold keeps its
natural share (FSDD 10 %, ESC 1/13). The rare class is a different one for each seed (a fixed shuffle of the
classes, ``--rare-label`` to fix it) and the kept windows are drawn with the seed; ``top:rare`` is
``top:LABEL`` with that class. Start from one example per class (the rare one's among the kept), then as above.
Tables: rare positives labelled so far (the starting one included), the rare class's F1 (recording level,
argmax) and its average precision (the recordings ranked by their mean probability of the rare class) on the
held-out recordings, and recording accuracy over all classes. ``ceiling``: the whole (thinned) pool labelled.

The tables give each measure at each budget as mean ± standard deviation over folds x seeds (the spread is mostly
between folds: held-out speakers and sources differ), and ``Δ random`` as the mean paired difference (same fold,
same seed, so the same starting labels) ± 1.96 standard errors over those pairs. Runs of one fold share their
held-out set, so these intervals are somewhat too narrow: read a small difference as a tie.
The plot (accuracy against labels, one panel per set, one line per strategy, band = ± 1 s.d.) goes to ``--plot``
(default docs/active_learning.png; with ``--rare``, docs/active_learning_rare.png: rare positives found, rare
AP and rare F1 against labels); the tables are printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score, f1_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_vs_logreg import fsdd_items, topic_items
from search_quality import esc_items

from audioclf.annotation.labels import Kind, Labels, Origin
from audioclf.annotation.suggest import QuickModel, Strategy, Suggested, suggest
from audioclf.corpus.index import Index
from audioclf.corpus.plan import IndexOptions, build
from audioclf.corpus.store import WindowRow
from audioclf.encoders.spec import parse_spec
from audioclf.io.manifest import Item

STRATEGIES = ("margin", "entropy", "diverse", "random")
RARE_STRATEGIES = ("top:rare", "diverse", "margin", "random")
TOP_RARE = "top:rare"  # top:LABEL with the run's rare class
SETS = ("fsdd", "esc", "topics")
HELD_OUT = "held-out"
DROPPED = "dropped"  # the rare class's pool windows left out of the pool (--rare)
SIMULATED = "sim"
LEASE_FOREVER_S = 1e9
ROUND = 10
REPORT_AT = (10, 20, 50, 100, 200, 300)


def topic_fold(passage: int) -> str:
    """Passages 0-7 and 8-15, each split into even and odd: in every fold each topic's 8 recordings are spoken
    by the 8 voices once each (``spoken_topics.synthesise`` gives passage p, rendition r of topic t the voice
    (3p + 5r + t) mod 8), so the pool has each voice equally often for every topic too. Folds by p mod 4 or in
    blocks of 4 do not: the pool then over-represents the voice/topic pairs the held-out fold lacks, and a model
    that hears the voice scores below chance (0.03-0.25 at the whole pool, measured)."""
    return f"{'ab'[passage // 8]}{passage % 2}"


@dataclass
class Corpus:
    """One set's index, held in memory: positions follow ``index.exact_arrays()``."""

    name: str
    index: Index
    ids: np.ndarray
    recordings: np.ndarray
    prepared: np.ndarray
    rows: list[WindowRow]
    labels: np.ndarray  # per window
    folds: np.ndarray  # per window: the held-out group it belongs to


@dataclass
class Run:
    set_name: str
    strategy: str
    fold: str
    seed: int
    n_labels: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)  # measure -> one value per point of n_labels

    def add(self, n: int, measures: dict[str, float]) -> None:
        self.n_labels.append(n)
        for k, v in measures.items():
            self.values.setdefault(k, []).append(v)


Ceilings = dict[str, list[dict[str, float]]]  # set -> one dict of measures per fold (x seed with --rare)


def set_items(name: str, args: argparse.Namespace) -> tuple[list[Item], Callable[[WindowRow], str]]:
    if name == "fsdd":
        return fsdd_items(args.fsdd, "digits"), lambda row: row.group  # leave one speaker out
    if name == "topics":  # group "<topic>-<passage>"; both renditions of a passage on the same side
        return topic_items(args.work), lambda row: topic_fold(int(row.group.rsplit("-", 1)[1]))
    return esc_items(args.esc), lambda row: Path(row.source).name.split("-")[0]  # the official fold


def open_corpus(name: str, args: argparse.Namespace) -> Corpus:
    items, fold_of = set_items(name, args)
    folder = args.work / f"{name}-index"
    options = IndexOptions(encoder=parse_spec("builtin"), cache_dir=args.work / "cache", progress=False)
    started = time.perf_counter()
    summary = build(items, folder, options)
    print(f"{name}: {summary.line()} ({time.perf_counter() - started:.0f} s)", flush=True)
    index = Index.open(folder, cache_dir=args.work / "cache")
    ids, recordings, prepared, _ = index.exact_arrays()
    found = index.store.rows([int(i) for i in ids])
    rows = [found[int(i)] for i in ids]
    labels = np.array([r.label or "" for r in rows])
    folds = np.array([str(fold_of(r)) for r in rows])
    return Corpus(name, index, ids, recordings, prepared, rows, labels, folds)


def score(corpus: Corpus, train: np.ndarray, test: np.ndarray, rare: str | None = None) -> dict[str, float]:
    """Recording-level accuracy and macro-F1 of the quick model fitted on the ``train`` windows (and, for a
    ``rare`` class, its F1 and average precision)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = QuickModel(corpus.prepared[train], corpus.labels[train].tolist())
    proba = model.proba(corpus.prepared[test])
    recs, inverse = np.unique(corpus.recordings[test], return_inverse=True)
    mean = np.zeros((len(recs), proba.shape[1]))
    np.add.at(mean, inverse, proba)
    predicted = np.asarray(model.classes)[mean.argmax(axis=1)]
    truth = np.empty(len(recs), dtype=corpus.labels.dtype)
    truth[inverse] = corpus.labels[test]
    out = {
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }
    if rare is not None:
        positive = truth == rare
        out["rare_f1"] = float(f1_score(positive, predicted == rare, zero_division=0))
        out["rare_ap"] = float(average_precision_score(positive, mean[:, model.classes.index(rare)]))
        out["rare_found"] = float((corpus.labels[train] == rare).sum())
    return out


def rare_setup(corpus: Corpus, fold: str, seed: int, args: argparse.Namespace) -> tuple[str, np.ndarray]:
    """The run's rare class and the pool positions left out to make it rare (seeded)."""
    classes = sorted(set(corpus.labels))
    fixed = dict(s.split("=", 1) for s in args.rare_label)
    rare = fixed.get(corpus.name) or classes[np.random.default_rng(1234).permutation(len(classes))[seed % len(classes)]]
    pool = np.flatnonzero(corpus.folds != fold)
    mine = pool[corpus.labels[pool] == rare]
    others = len(pool) - len(mine)
    keep = max(2, round(args.rare_share * others / (1 - args.rare_share)))
    kept = np.random.default_rng([seed, 7]).choice(mine, min(keep, len(mine)), replace=False)
    return rare, np.setdiff1d(mine, kept)


def simulate(
    corpus: Corpus,
    fold: str,
    strategy: str,
    seed: int,
    budget: int,
    work: Path,
    rare: str | None = None,
    dropped: np.ndarray | None = None,
) -> Run:
    held = np.flatnonzero(corpus.folds == fold)
    dropped = np.zeros(0, dtype=np.int64) if dropped is None else dropped
    pool = np.setdiff1d(np.flatnonzero(corpus.folds != fold), dropped)
    where = {int(i): p for p, i in enumerate(corpus.ids)}
    manifest = work / f"{corpus.name}-{fold}-{strategy.replace(':', '_')}-{seed}.csv"
    for old in work.glob(manifest.name + "*"):
        old.unlink()
    for old in work.glob(manifest.stem + ".answers.sqlite*"):
        old.unlink()
    labels = Labels(manifest, corpus.index.card.id)
    labels.lease([int(i) for i in corpus.ids[held]], HELD_OUT, seconds=LEASE_FOREVER_S)
    labels.lease([int(i) for i in corpus.ids[dropped]], DROPPED, seconds=LEASE_FOREVER_S)
    rng = np.random.default_rng(seed)
    labelled: list[int] = []
    for label in sorted(set(corpus.labels[pool])):  # one example per class, at random from the pool
        labelled.append(int(rng.choice(pool[corpus.labels[pool] == label])))
    for p in labelled:
        labels.add(corpus.rows[p], Kind.LABEL, corpus.labels[p], annotator=SIMULATED, origin=Origin.RANDOM)
    run = Run(corpus.name, strategy, fold, seed)
    asked = Strategy.parse(f"top:{rare}" if strategy == TOP_RARE else strategy)
    budget = min(budget, len(pool))
    away, step = set(held.tolist()) | set(dropped.tolist()), 0
    while True:
        run.add(len(labelled), score(corpus, np.asarray(labelled), held, rare))
        if len(labelled) >= budget:
            break
        got = next_round(corpus.index, labels, len(labelled), budget, asked, seed * 1000 + step)
        step += 1
        chosen = [where[s.window_id] for s in got.suggestions]
        if not chosen:
            break
        assert not away.intersection(chosen), "suggest returned a held-out or dropped (leased) window"
        assert not set(labelled).intersection(chosen), "suggest returned a labelled window"
        for p in chosen:
            labels.add(corpus.rows[p], Kind.LABEL, corpus.labels[p], annotator=SIMULATED, origin=Origin.SUGGESTION)
        labelled += chosen
    trained = {w for w, s in labels.standing().items() if s.labels}
    assert trained == {int(corpus.ids[p]) for p in labelled}, "the labels log and the simulation disagree"
    labels.close()
    return run


def at(run: Run, n: int, measure: str) -> float | None:
    """The measure with exactly ``n`` labels (None when the run started above ``n`` or stopped short of it)."""
    return next((v for k, v in zip(run.n_labels, run.values[measure], strict=True) if k == n), None)


def next_round(index: Index, labels: Labels, n_labelled: int, budget: int, asked: Strategy, seed: int) -> Suggested:
    """The simulated labeller's next round: up to the next multiple of ``ROUND`` labels, within the budget."""
    n = min(ROUND - n_labelled % ROUND, budget - n_labelled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return suggest(index, labels, n, asked, annotator=SIMULATED, seed=seed)


def delta_cell(
    these: Sequence[Any],
    randoms: dict[tuple[str, int], Any],
    value: Callable[[Any, int], float | None],
    n: int,
    digits: int = 3,
) -> str:
    """The mean paired difference to ``random`` at ``n`` labels (same fold, same seed) ± 1.96 standard errors."""
    pairs = [
        a - b
        for r in these
        if (a := value(r, n)) is not None
        and (rr := randoms.get((r.fold, r.seed))) is not None
        and (b := value(rr, n)) is not None
    ]
    if not pairs:
        return "–"
    half = 1.96 * np.std(pairs, ddof=1) / np.sqrt(len(pairs)) if len(pairs) > 1 else float("nan")
    return f"{np.mean(pairs):+.{digits}f} ± {half:.{digits}f}"


def cell(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if values else "–"


def table(runs: list[Run], ceilings: Ceilings, budget: int, measure: str, name: str, last_measure: str | None,
          digits: int = 3) -> str:  # fmt: skip
    """One row per set and strategy: ``measure`` at each budget, its paired difference with random, and
    ``last_measure`` at the largest budget (or where a set's pool ran out); then the ceiling row."""
    points = sorted({n for n in REPORT_AT if n <= budget} | {budget})
    last = max(points)
    head = ["set", "strategy", "start (1/class)", *[f"{name} @{n}" for n in points]]
    head += [f"Δ random @{n}" for n in points]
    if last_measure:
        head.append(f"{last_measure.replace('_', '-')} @{last}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for set_name in dict.fromkeys(r.set_name for r in runs):
        mine = [r for r in runs if r.set_name == set_name]
        randoms = {(r.fold, r.seed): r for r in mine if r.strategy == "random"}
        for strategy in dict.fromkeys(r.strategy for r in mine):
            these = [r for r in mine if r.strategy == strategy]
            start = f"{cell([r.values[measure][0] for r in these], digits)} ({these[0].n_labels[0]})"
            values, deltas = [], []
            for n in points:
                values.append(cell([v for r in these if (v := at(r, n, measure)) is not None], digits))
                value = functools.partial(at, measure=measure)
                deltas.append("–" if strategy == "random" else delta_cell(these, randoms, value, n, digits))
            row = [set_name, strategy, start, *values, *deltas]
            if last_measure:
                ends = {r.n_labels[-1] for r in these}
                final = cell([r.values[last_measure][-1] for r in these])
                row.append(final if ends == {last} else f"{final} (@{'/'.join(map(str, sorted(ends)))})")
            lines.append("| " + " | ".join(row) + " |")
        blanks = ["–"] * (len(head) - 3 - (1 if last_measure else 0))
        ceiling = [cell([c[measure] for c in ceilings[set_name]], digits), *blanks]
        if last_measure:
            ceiling.append(cell([c[last_measure] for c in ceilings[set_name]]))
        lines.append("| " + " | ".join([set_name, "ceiling (whole pool)", *ceiling]) + " |")
    return "\n".join(lines)


def curves(ax: Any, mine: Sequence[Any], measure: str) -> None:
    """Mean ``measure`` against labels, one line per strategy, band = ± 1 s.d. over runs."""
    for strategy in dict.fromkeys(r.strategy for r in mine):
        these = [r for r in mine if r.strategy == strategy]
        n = min(len(r.n_labels) for r in these)
        x = these[0].n_labels[:n]
        y = np.array([r.values[measure][:n] for r in these])
        line = ax.plot(x, y.mean(axis=0), marker=".", label=f"{strategy} ({len(these)} runs)")[0]
        ax.fill_between(x, y.mean(axis=0) - y.std(axis=0), y.mean(axis=0) + y.std(axis=0), alpha=0.12,
                        color=line.get_color())  # fmt: skip
    ax.set_xlabel("labelled windows")
    ax.grid(alpha=0.3)


def plot(runs: list[Run], ceilings: Ceilings, path: Path, rare: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r.set_name for r in runs))
    panels = [("rare_found", "rare positives labelled"), ("rare_ap", "rare class AP (held-out)"),
              ("rare_f1", "rare class F1 (held-out)")] if rare else [("accuracy", "recording accuracy")]  # fmt: skip
    fig, axes = plt.subplots(len(panels), len(sets), figsize=(6 * len(sets), 4.2 * len(panels)), squeeze=False)
    for j, set_name in enumerate(sets):
        for i, (measure, what) in enumerate(panels):
            ax = axes[i][j]
            curves(ax, [r for r in runs if r.set_name == set_name], measure)
            ceiling = float(np.mean([c[measure] for c in ceilings[set_name]]))
            ax.axhline(ceiling, color="k", ls="--", lw=1, label="whole pool labelled")
            kind = "one rare class (~2.5 % of the pool)" if rare else "quick model on held-out groups"
            ax.set_title(f"{set_name}: {kind} (builtin encoder)", fontsize=10)
            ax.set_ylabel(what)
            ax.legend(fontsize=8, loc="upper left" if measure == "rare_found" else "lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--esc", type=Path, default=Path("../shared/data/esc-dev"))
    parser.add_argument("--sets", nargs="+", default=None, choices=SETS, help="default all; with --rare fsdd esc")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: all but top (rare: top:rare too)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folds", type=int, default=None, help="only the first N folds of each set")
    parser.add_argument("--budget", type=int, default=100, help="labels to stop at (capped by the pool)")
    parser.add_argument("--rare", action="store_true", help="the rare-class scenario (see above)")
    parser.add_argument("--rare-share", type=float, default=0.025, help="the rare class's share of the pool")
    parser.add_argument("--rare-label", nargs="*", default=[], metavar="SET=LABEL", help="fix a set's rare class")
    parser.add_argument("--work", type=Path, default=Path("/tmp/active-learning"))
    parser.add_argument("--out", type=Path, default=None, help="default /tmp/active_learning[_rare].md")
    parser.add_argument("--plot", type=Path, default=None, help="default docs/active_learning[_rare].png")
    args = parser.parse_args()
    suffix = "_rare" if args.rare else ""
    args.sets = args.sets or (["fsdd", "esc"] if args.rare else list(SETS))
    args.strategies = args.strategies or list(RARE_STRATEGIES if args.rare else STRATEGIES)
    args.out = args.out or Path(f"/tmp/active_learning{suffix}.md")
    args.plot = args.plot or Path(f"docs/active_learning{suffix}.png")
    for s in args.strategies:
        if s == TOP_RARE and not args.rare:
            parser.error(f"{TOP_RARE} is for --rare (use top:LABEL)")
        Strategy.parse("top:x" if s == TOP_RARE else s)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with threadpool_limits(1):  # tiny fits: BLAS threads only fight (about 3x slower on 2 shared cores)
        runs, ceilings = simulate_all(args)
    if args.rare:
        parts = [
            ("Rare positives labelled", "found", "rare_found", None, 1),
            ("Rare class average precision on held-out recordings", "AP", "rare_ap", None, 3),
            ("Rare class F1 on held-out recordings", "F1", "rare_f1", None, 3),
            ("Recording accuracy (all classes)", "acc", "accuracy", "macro_f1", 3),
        ]
    else:
        parts = [("Recording accuracy", "acc", "accuracy", "macro_f1", 3)]
    text = "\n\n".join(
        f"{title}:\n\n" + table(runs, ceilings, args.budget, measure, name, last, digits)
        for title, name, measure, last, digits in parts
    )
    print("\n" + text + f"\n\n{len(runs)} runs, {time.perf_counter() - started:.0f} s", flush=True)
    args.out.write_text(text + "\n")
    plot(runs, ceilings, args.plot, args.rare)


def simulate_all(args: argparse.Namespace) -> tuple[list[Run], Ceilings]:
    logs = args.work / "labels"
    logs.mkdir(exist_ok=True)
    runs: list[Run] = []
    ceilings: Ceilings = {}
    for name in args.sets:
        corpus = open_corpus(name, args)
        folds = [str(f) for f in sorted(set(corpus.folds))][: args.folds]
        print(f"{name}: {len(corpus.ids)} windows, {len(set(corpus.recordings))} recordings, folds {folds}", flush=True)
        ceilings[name] = []
        for fold in folds:
            pool, held = np.flatnonzero(corpus.folds != fold), np.flatnonzero(corpus.folds == fold)
            if not args.rare:
                ceilings[name].append(score(corpus, pool, held))
            for seed in args.seeds:
                rare: str | None = None
                dropped = np.zeros(0, dtype=np.int64)
                if args.rare:
                    rare, dropped = rare_setup(corpus, fold, seed, args)
                    ceilings[name].append(score(corpus, np.setdiff1d(pool, dropped), held, rare))
                    kept = int((corpus.labels[pool] == rare).sum()) - len(dropped)
                    share = kept / (len(pool) - len(dropped))
                    print(f"{name} fold {fold} seed {seed}: rare class {rare}, {kept} pool windows ({share:.1%})")
                for strategy in args.strategies:
                    started = time.perf_counter()
                    run = simulate(corpus, fold, strategy, seed, args.budget, logs, rare, dropped)
                    runs.append(run)
                    measure = "rare_found" if rare is not None else "accuracy"
                    fmt = ".0f" if rare is not None else ".2f"
                    points = zip(run.n_labels, run.values[measure], strict=True)
                    curve = " ".join(f"{k}:{v:{fmt}}" for k, v in points)
                    took = time.perf_counter() - started
                    print(f"{name} fold {fold} seed {seed} {strategy:8s} ({took:.0f} s) {curve}", flush=True)
        corpus.index.close()
    return runs, ceilings


if __name__ == "__main__":
    main()
