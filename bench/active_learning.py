"""Does active learning pay? ``suggest``'s strategies against ``random`` with a simulated labeller (issue 30, "Does it
work? A benchmark, not a belief").

    .venv/bin/python bench/active_learning.py                                   # FSDD + ESC, 2 seeds, to 100 labels
    .venv/bin/python bench/active_learning.py --budget 300 --seeds 0 1 2 3 4    # the full run (FSDD to 300 labels)
    .venv/bin/python bench/active_learning.py --sets esc --folds 2 --seeds 0    # a smoke test

The default run takes about 5 minutes on 2 shared cores (the index builds, once, about a minute; they are kept
under ``--work``); ``--budget 300`` makes each run about 5x longer (FSDD's pool is 1,000 clips, ESC's 416).

Sets: FSDD digits (label digit, group speaker; three speakers, so leave one speaker out: 3 folds) and the real
environmental sounds of ``../shared/data/esc-dev`` (13 classes, group Freesound source recording, its 5 official
folds). Each set is one corpus index built with the builtin encoder (its native windows, the default
``standardized`` similarity, so its statistics are taken over every window, held-out ones included: unlabelled
audio a user would have indexed too). The labels in the index come from the manifests, so the simulated labeller
answers every window with ``row.label``: it is never wrong.

For each fold, seed and strategy: a fresh labels log (``audioclf.annotation.labels.Labels``) is bound to the
index. The held-out fold's windows are *leased* to another annotator (``held-out``) for 30 years, so
``suggest(..., annotator="sim")`` never hands them out (a lease is exactly how the library keeps a window from a
reviewer; nothing is written about them as an answer, so they never enter the quick model's training set).
One window per class is then labelled, drawn at random from the pool (seeded), and each round asks
``suggest(index, labels, n, strategy, annotator="sim", seed=...)`` for 10 windows (the first round tops the count
up to a multiple of 10), labels them with the truth, and scores ``QuickModel`` fitted on the labelled windows'
prepared vectors (what ``suggest`` itself fits) on the held-out recordings (mean of a recording's window
probabilities; accuracy and macro-F1). ``ceiling`` is the same model on the whole pool labelled.

The table gives accuracy at each budget as mean ± standard deviation over folds x seeds (the spread is mostly
between folds: held-out speakers and sources differ), and ``Δ random`` as the mean paired difference (same fold,
same seed, so the same starting labels) ± 1.96 standard errors over those pairs. Runs of one fold share their
held-out set, so these intervals are somewhat too narrow: read a small difference as a tie.
The plot (accuracy against labels, one line per strategy, band = ± 1 s.d.) goes to ``--plot``
(default docs/active_learning.png); the table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_vs_logreg import fsdd_items
from search_quality import esc_items

from audioclf.annotation.labels import Kind, Labels, Origin
from audioclf.annotation.suggest import QuickModel, Strategy, suggest
from audioclf.corpus.index import Index
from audioclf.corpus.plan import IndexOptions, build
from audioclf.corpus.store import WindowRow
from audioclf.encoders.spec import parse_spec
from audioclf.io.manifest import Item

STRATEGIES = ("margin", "entropy", "diverse", "random")
HELD_OUT = "held-out"
SIMULATED = "sim"
LEASE_FOREVER_S = 1e9
ROUND = 10
REPORT_AT = (10, 20, 50, 100, 200, 300)


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
    n_labels: list[int]
    accuracy: list[float]
    macro_f1: list[float]


def set_items(name: str, args: argparse.Namespace) -> tuple[list[Item], Callable[[WindowRow], str]]:
    if name == "fsdd":
        return fsdd_items(args.fsdd, "digits"), lambda row: row.group  # leave one speaker out
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


def score(corpus: Corpus, train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """Recording-level accuracy and macro-F1 of the quick model fitted on the ``train`` windows."""
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
    return float((predicted == truth).mean()), float(f1_score(truth, predicted, average="macro", zero_division=0))


def simulate(corpus: Corpus, fold: str, strategy: str, seed: int, budget: int, work: Path) -> Run:
    held = np.flatnonzero(corpus.folds == fold)
    pool = np.flatnonzero(corpus.folds != fold)
    where = {int(i): p for p, i in enumerate(corpus.ids)}
    manifest = work / f"{corpus.name}-{fold}-{strategy}-{seed}.csv"
    for old in work.glob(manifest.name + "*"):
        old.unlink()
    for old in work.glob(manifest.stem + ".answers.sqlite*"):
        old.unlink()
    labels = Labels(manifest, corpus.index.card.id)
    labels.lease([int(i) for i in corpus.ids[held]], HELD_OUT, seconds=LEASE_FOREVER_S)
    rng = np.random.default_rng(seed)
    labelled: list[int] = []
    for label in sorted(set(corpus.labels[pool])):  # one example per class, at random from the pool
        labelled.append(int(rng.choice(pool[corpus.labels[pool] == label])))
    for p in labelled:
        labels.add(corpus.rows[p], Kind.LABEL, corpus.labels[p], annotator=SIMULATED, origin=Origin.RANDOM)
    run = Run(corpus.name, strategy, fold, seed, [], [], [])
    budget = min(budget, len(pool))
    held_set, step = set(held.tolist()), 0
    while True:
        acc, f1 = score(corpus, np.asarray(labelled), held)
        run.n_labels.append(len(labelled))
        run.accuracy.append(acc)
        run.macro_f1.append(f1)
        if len(labelled) >= budget:
            break
        n = min(ROUND - len(labelled) % ROUND, budget - len(labelled))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            asked = Strategy.parse(strategy)
            got = suggest(corpus.index, labels, n, asked, annotator=SIMULATED, seed=seed * 1000 + step)
        step += 1
        chosen = [where[s.window_id] for s in got.suggestions]
        if not chosen:
            break
        assert not held_set.intersection(chosen), "suggest returned a held-out (leased) window"
        assert not set(labelled).intersection(chosen), "suggest returned a labelled window"
        for p in chosen:
            labels.add(corpus.rows[p], Kind.LABEL, corpus.labels[p], annotator=SIMULATED, origin=Origin.SUGGESTION)
        labelled += chosen
    trained = {a.window for a in labels.current().values() if a.kind is Kind.LABEL}
    assert trained == {int(corpus.ids[p]) for p in labelled}, "the labels log and the simulation disagree"
    labels.close()
    return run


def at(run: Run, n: int) -> float | None:
    """Accuracy with exactly ``n`` labels (None when the run started above ``n`` or stopped short of it)."""
    return next((acc for k, acc in zip(run.n_labels, run.accuracy, strict=True) if k == n), None)


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def table(runs: list[Run], ceilings: dict[str, list[tuple[float, float]]], budget: int) -> str:
    points = sorted({n for n in REPORT_AT if n <= budget} | {budget})
    last = max(points)
    head = ["set", "strategy", "start (1/class)", *[f"acc @{n}" for n in points], *[f"Δ random @{n}" for n in points]]
    head.append(f"macro-F1 @{last}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for set_name in dict.fromkeys(r.set_name for r in runs):
        mine = [r for r in runs if r.set_name == set_name]
        randoms = {(r.fold, r.seed): r for r in mine if r.strategy == "random"}
        for strategy in dict.fromkeys(r.strategy for r in mine):
            these = [r for r in mine if r.strategy == strategy]
            start = f"{cell([r.accuracy[0] for r in these])} ({these[0].n_labels[0]})"
            accs, deltas = [], []
            for n in points:
                values = [a for r in these if (a := at(r, n)) is not None]
                accs.append(cell(values))
                pairs = [
                    a - b
                    for r in these
                    if (a := at(r, n)) is not None
                    and (rr := randoms.get((r.fold, r.seed))) is not None
                    and (b := at(rr, n)) is not None
                ]
                if strategy == "random" or not pairs:
                    deltas.append("–")
                else:
                    half = 1.96 * np.std(pairs, ddof=1) / np.sqrt(len(pairs)) if len(pairs) > 1 else float("nan")
                    deltas.append(f"{np.mean(pairs):+.3f} ± {half:.3f}")
            f1 = cell([r.macro_f1[r.n_labels.index(last)] for r in these if last in r.n_labels])
            lines.append("| " + " | ".join([set_name, strategy, start, *accs, *deltas, f1]) + " |")
        blanks = ["–"] * (len(head) - 4)
        acc, f1 = cell([a for a, _ in ceilings[set_name]]), cell([f for _, f in ceilings[set_name]])
        lines.append("| " + " | ".join([set_name, "ceiling (whole pool)", acc, *blanks, f1]) + " |")
    return "\n".join(lines)


def plot(runs: list[Run], ceilings: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r.set_name for r in runs))
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        mine = [r for r in runs if r.set_name == set_name]
        for strategy in dict.fromkeys(r.strategy for r in mine):
            these = [r for r in mine if r.strategy == strategy]
            n = min(len(r.n_labels) for r in these)
            x = these[0].n_labels[:n]
            y = np.array([r.accuracy[:n] for r in these])
            line = ax.plot(x, y.mean(axis=0), marker=".", label=f"{strategy} ({len(these)} runs)")[0]
            ax.fill_between(x, y.mean(axis=0) - y.std(axis=0), y.mean(axis=0) + y.std(axis=0), alpha=0.12,
                            color=line.get_color())  # fmt: skip
        ceiling = float(np.mean([a for a, _ in ceilings[set_name]]))
        ax.axhline(ceiling, color="k", ls="--", lw=1, label="whole pool labelled")
        ax.set_title(f"{set_name}: quick model on held-out groups (builtin encoder)")
        ax.set_xlabel("labelled windows")
        ax.set_ylabel("recording accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--esc", type=Path, default=Path("../shared/data/esc-dev"))
    parser.add_argument("--sets", nargs="+", default=["fsdd", "esc"], choices=["fsdd", "esc"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folds", type=int, default=None, help="only the first N folds of each set")
    parser.add_argument("--budget", type=int, default=100, help="labels to stop at (capped by the pool)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/active-learning"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/active_learning.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/active_learning.png"))
    args = parser.parse_args()
    for s in args.strategies:
        Strategy.parse(s)
    args.work.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(1):  # tiny fits: BLAS threads only fight (about 3x slower on 2 shared cores)
        runs, ceilings = simulate_all(args)
    text = table(runs, ceilings, args.budget)
    print("\n" + text)
    args.out.write_text(text + "\n")
    plot(runs, ceilings, args.plot)


def simulate_all(args: argparse.Namespace) -> tuple[list[Run], dict[str, list[tuple[float, float]]]]:
    logs = args.work / "labels"
    logs.mkdir(exist_ok=True)
    runs: list[Run] = []
    ceilings: dict[str, list[tuple[float, float]]] = {}
    for name in args.sets:
        corpus = open_corpus(name, args)
        folds = [str(f) for f in sorted(set(corpus.folds))][: args.folds]
        print(f"{name}: {len(corpus.ids)} windows, {len(set(corpus.recordings))} recordings, folds {folds}", flush=True)
        ceilings[name] = []
        for fold in folds:
            pool, held = np.flatnonzero(corpus.folds != fold), np.flatnonzero(corpus.folds == fold)
            ceilings[name].append(score(corpus, pool, held))
            for seed in args.seeds:
                for strategy in args.strategies:
                    started = time.perf_counter()
                    run = simulate(corpus, fold, strategy, seed, args.budget, logs)
                    runs.append(run)
                    curve = " ".join(f"{k}:{a:.2f}" for k, a in zip(run.n_labels, run.accuracy, strict=True))
                    took = time.perf_counter() - started
                    print(f"{name} fold {fold} seed {seed} {strategy:8s} ({took:.0f} s) {curve}", flush=True)
        corpus.index.close()
    return runs, ceilings


if __name__ == "__main__":
    main()
