"""Does active learning pay on multi-label sounds? ``suggest``'s strategies against ``random`` with a simulated
labeller on the multi-label set of ``bench/speech_and_sounds.py`` (issue 30, "Does it work?", "the multi-label
sounds"; the single-label sets are ``bench/active_learning.py``).

    .venv/bin/python bench/active_learning_multilabel.py                       # 3 folds x 2 seeds, to 100 labels
    .venv/bin/python bench/active_learning_multilabel.py --folds 1 --seeds 0   # a smoke test
    .venv/bin/python bench/active_learning_multilabel.py --budget 300          # further (the pool is ~400 clips)

The set: 2 s clips, each one to three of ``speech`` (FSDD digits of one speaker, back to back), ``music``,
``rain``, ``siren``, ``engine`` (the synthesised sounds of ``tests/ood_sounds.py``) mixed at random gains;
``--per-speaker`` clips for each of FSDD's three speakers (``speech_and_sounds.multilabel_set``, its own fixed
seed), grouped by speaker. Folds: leave one speaker out (3 folds; the held-out speaker's clips are never labelled,
the background sounds are independent of the speaker). One corpus index, builtin encoder, native windows, default
``standardized`` similarity (statistics over every window, held-out ones included), built once under ``--work``.
The index keeps each clip's label set as ``a;b``; a window carries its clip's labels.

For each fold, seed and strategy: a fresh multi-label labels log (``Labels(..., Mode.MULTI)``) is bound to the
index; the held-out speaker's windows are leased to another annotator (``held-out``) for 30 years, so
``suggest(..., annotator="sim")`` never hands them out. Start: one window per label (for each label in turn, a
random pool window that has it, drawn with the seed, so the same start for every strategy), then rounds asking
``suggest`` for 10 windows (the first tops the count up to 10), to ``--budget`` labelled windows. The simulated
labeller is never wrong and answers every label of a window: one ``labels.add(row, Kind.LABEL, label, ...)`` per
label in ``row.label.split(";")`` (no clip has none, so ``Kind.NONE`` never occurs). A budget counts windows, not
answers (about two answers a window). After each round the quick model is refitted on the labelled windows:
``QuickMultiModel`` (one class-balanced logistic regression per label, what ``suggest`` itself fits), its targets
taken from the labels log (``labels.standing()``, checked against the truth); a label with no positive or no
negative yet scores every window with its share among the labelled ones. Scored at recording (clip) level on the
held-out speaker's clips (mean of a clip's window probabilities): mAP (macro over the five labels of sklearn's
average precision) and micro-F1 at 0.5. ``ceiling``: the same model on the whole pool labelled. ``chance``: the
mAP of a constant ranking (each label's prevalence in the held-out clips).

Tables: each measure at each budget as mean ± standard deviation over folds x seeds (the spread is mostly between
folds), and ``Δ random`` as the mean paired difference (same fold and seed, so the same start) ± 1.96 standard
errors over those pairs. Runs of one fold share their held-out set, so these intervals are somewhat too narrow:
read a small difference as a tie. Plot: mAP and micro-F1 against labelled windows, one line per strategy, band
± 1 s.d. (``--plot``, default docs/active_learning_multilabel.png); the tables go to ``--out``
(default /tmp/al_multilabel.md) with the command, the wall time and the CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score, f1_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from active_learning import curves, delta_cell, next_round
from speech_and_sounds import SOUNDS, by_speaker, multilabel_set

from audioclf.annotation.labels import Kind, Labels, Mode, Origin
from audioclf.annotation.scorers import QuickMultiModel, answered_windows, label_targets
from audioclf.annotation.suggest import Strategy
from audioclf.corpus.index import Index
from audioclf.corpus.plan import IndexOptions, build
from audioclf.corpus.store import WindowRow
from audioclf.encoders.spec import parse_spec
from audioclf.io.label_sets import join_labels, split_labels
from audioclf.io.manifest import Item

LABELS = ("speech", *SOUNDS)
STRATEGIES = ("margin", "entropy", "diverse", "random")
HELD_OUT = "held-out"
SIMULATED = "sim"
LEASE_FOREVER_S = 1e9
ROUND = 10
REPORT_AT = (10, 20, 50, 100, 200, 300)
MEASURES = (("map", "mAP"), ("micro_f1", "micro-F1 @0.5"))


@dataclass
class Corpus:
    """The index held in memory: positions follow ``index.exact_arrays()``."""

    index: Index
    ids: np.ndarray
    recordings: np.ndarray
    prepared: np.ndarray
    rows: list[WindowRow]
    truth: np.ndarray  # [windows, labels] 0/1, from row.label
    folds: np.ndarray  # per window: its speaker


@dataclass
class Run:
    strategy: str
    fold: str
    seed: int
    n_labels: list[int] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # label answers given so far (a window has 1-3)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, n: int, answers: int, measures: dict[str, float]) -> None:
        self.n_labels.append(n)
        self.answers.append(answers)
        for k, v in measures.items():
            self.values.setdefault(k, []).append(v)


def items(args: argparse.Namespace) -> list[Item]:
    """The synthesised clips (written once under ``--work``; ``multilabel_set`` is seeded, so the same set)."""
    root = args.work / f"clips-{args.per_speaker}-take{args.max_take}"
    manifest = root / "multilabel.jsonl"
    if not manifest.exists():
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        made = multilabel_set(by_speaker(args.fsdd, args.max_take), "", root, args.per_speaker)
        assert made == manifest
        print(f"synthesised {args.per_speaker} clips a speaker ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [Item(r["path"], join_labels(r["labels"]), None, r["group"], Path(r["path"]).name) for r in rows]


def open_corpus(args: argparse.Namespace) -> Corpus:
    folder = args.work / f"index-{args.per_speaker}-take{args.max_take}"
    options = IndexOptions(encoder=parse_spec("builtin"), cache_dir=args.work / "cache", progress=False)
    started = time.perf_counter()
    summary = build(items(args), folder, options)
    print(f"index: {summary.line()} ({time.perf_counter() - started:.0f} s)", flush=True)
    index = Index.open(folder, cache_dir=args.work / "cache")
    ids, recordings, prepared, _ = index.exact_arrays()
    found = index.store.rows([int(i) for i in ids])
    rows = [found[int(i)] for i in ids]
    truth = np.zeros((len(rows), len(LABELS)), dtype=np.int64)
    for k, r in enumerate(rows):
        for label in split_labels(r.label or ""):
            truth[k, LABELS.index(label)] = 1
    assert truth.sum(axis=1).min() >= 1, "a window without a label"
    folds = np.array([r.group for r in rows])
    return Corpus(index, ids, recordings, prepared, rows, truth, folds)


def window_probabilities(
    corpus: Corpus, train: np.ndarray, targets: dict[str, np.ndarray], test: np.ndarray
) -> np.ndarray:
    """[test windows, labels]: ``QuickMultiModel`` on the ``train`` windows; a label it leaves out (no positive or
    no negative yet) gets its share among the labelled windows, the same for every window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = QuickMultiModel(corpus.prepared[train], targets, corpus.prepared) if targets else None
    known = model.probabilities(test) if model is not None else None
    out = np.zeros((len(test), len(LABELS)))
    for j, label in enumerate(LABELS):
        if known is not None and label in known.classes:
            out[:, j] = known.values[:, known.classes.index(label)]
        else:
            out[:, j] = corpus.truth[train, j].mean()
    return out


def score(corpus: Corpus, train: np.ndarray, targets: dict[str, np.ndarray], test: np.ndarray) -> dict[str, float]:
    """Clip-level mAP and micro-F1 at 0.5 on the ``test`` windows' recordings."""
    proba = window_probabilities(corpus, train, targets, test)
    recs, inverse = np.unique(corpus.recordings[test], return_inverse=True)
    mean = np.zeros((len(recs), len(LABELS)))
    np.add.at(mean, inverse, proba)
    mean /= np.bincount(inverse, minlength=len(recs))[:, None]
    truth = np.zeros((len(recs), len(LABELS)), dtype=np.int64)
    truth[inverse] = corpus.truth[test]
    aps = [average_precision_score(truth[:, j], mean[:, j]) for j in range(len(LABELS)) if truth[:, j].any()]
    return {
        "map": float(np.mean(aps)),
        "micro_f1": float(f1_score(truth, (mean >= 0.5).astype(np.int64), average="micro", zero_division=0)),
    }


def truth_targets(corpus: Corpus, train: np.ndarray) -> dict[str, np.ndarray]:
    """``_targets`` of the ``train`` windows as the labeller answered them (every window answered, so 0/1 only)."""
    return {
        label: corpus.truth[train, j]
        for j, label in enumerate(LABELS)
        if corpus.truth[train, j].any() and not corpus.truth[train, j].all()
    }


def log_targets(corpus: Corpus, labels: Labels, positions: list[int]) -> dict[str, np.ndarray]:
    """The quick model's targets as the library derives them from the labels log, in the order of ``positions``
    (checked against the truth: the log must hold exactly every true label of every labelled window)."""
    rows, answered = answered_windows(corpus.ids, labels.standing())
    assert sorted(rows.tolist()) == sorted(positions), "the labels log and the simulation disagree on the windows"
    order = np.argsort(rows)
    rows, answered = rows[order], [answered[k] for k in order]
    targets = label_targets(answered)
    train = np.sort(np.asarray(positions))
    want = truth_targets(corpus, train)
    assert targets.keys() == want.keys() and all((targets[k] == want[k]).all() for k in want), (
        "the labels log's targets are not the truth"
    )
    return {k: v[np.argsort(np.argsort(positions))] for k, v in targets.items()}


def answer(labels: Labels, corpus: Corpus, p: int, origin: Origin) -> int:
    """The simulated labeller: every true label of window ``p``, one answer each."""
    row = corpus.rows[p]
    given = split_labels(row.label or "")
    for label in given:
        labels.add(row, Kind.LABEL, label, annotator=SIMULATED, origin=origin)
    return len(given)


def simulate(corpus: Corpus, fold: str, strategy: str, seed: int, budget: int, work: Path) -> Run:
    held = np.flatnonzero(corpus.folds == fold)
    pool = np.flatnonzero(corpus.folds != fold)
    where = {int(i): p for p, i in enumerate(corpus.ids)}
    manifest = work / f"ml-{fold}-{strategy}-{seed}.csv"
    for old in [*work.glob(manifest.name + "*"), *work.glob(manifest.stem + ".answers.sqlite*")]:
        old.unlink()
    labels = Labels(manifest, corpus.index.card.id, Mode.MULTI)
    assert labels.mode is Mode.MULTI
    labels.lease([int(i) for i in corpus.ids[held]], HELD_OUT, seconds=LEASE_FOREVER_S)
    rng = np.random.default_rng([seed, int(np.flatnonzero(np.unique(corpus.folds) == fold)[0])])
    labelled: list[int] = []
    for j in range(len(LABELS)):  # one window per label, at random from the pool's windows with it
        having = np.setdiff1d(pool[corpus.truth[pool, j] == 1], labelled)
        labelled.append(int(rng.choice(having)))
    answers = sum(answer(labels, corpus, p, Origin.RANDOM) for p in labelled)
    run = Run(strategy, fold, seed)
    asked = Strategy.parse(strategy)
    budget, step = min(budget, len(pool)), 0
    while True:
        targets = log_targets(corpus, labels, labelled)
        run.add(len(labelled), answers, score(corpus, np.asarray(labelled), targets, held))
        if len(labelled) >= budget:
            break
        got = next_round(corpus.index, labels, len(labelled), budget, asked, seed * 1000 + step)
        step += 1
        if got.note:
            print(f"  note ({strategy}, fold {fold}, seed {seed}, {len(labelled)} labelled): {got.note}", flush=True)
        chosen = [where[s.window_id] for s in got.suggestions]
        if not chosen:
            break
        assert len(set(chosen)) == len(chosen), "suggest returned a window twice"
        assert not set(held.tolist()).intersection(chosen), "suggest returned a held-out (leased) window"
        assert not set(labelled).intersection(chosen), "suggest returned a labelled window"
        answers += sum(answer(labels, corpus, p, Origin.SUGGESTION) for p in chosen)
        labelled += chosen
    labels.close()
    return run


def at(run: Run, n: int, measure: str) -> float | None:
    return next((v for k, v in zip(run.n_labels, run.values[measure], strict=True) if k == n), None)


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def table(runs: list[Run], ceilings: list[dict[str, float]], budget: int, measure: str, name: str) -> str:
    points = sorted({n for n in REPORT_AT if n <= budget} | {budget})
    head = ["strategy", f"start (1/label, {runs[0].n_labels[0]})", *[f"{name} @{n}" for n in points]]
    head += [f"Δ random @{n}" for n in points]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    randoms = {(r.fold, r.seed): r for r in runs if r.strategy == "random"}
    for strategy in dict.fromkeys(r.strategy for r in runs):
        these = [r for r in runs if r.strategy == strategy]
        row = [strategy, cell([r.values[measure][0] for r in these])]
        row += [cell([v for r in these if (v := at(r, n, measure)) is not None]) for n in points]
        value = functools.partial(at, measure=measure)
        row += ["–" if strategy == "random" else delta_cell(these, randoms, value, n) for n in points]
        lines.append("| " + " | ".join(row) + " |")
    extra = [("ceiling (whole pool)", measure)] + ([("chance (prevalence)", "chance")] if measure == "map" else [])
    for what, key in extra:  # the same at every budget
        value = cell([c[key] for c in ceilings])
        lines.append("| " + " | ".join([what, "–", *[value] * len(points), *["–"] * len(points)]) + " |")
    return "\n".join(lines)


def plot(runs: list[Run], ceilings: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MEASURES), figsize=(6 * len(MEASURES), 4.2), squeeze=False)
    for ax, (measure, what) in zip(axes[0], MEASURES, strict=True):
        curves(ax, runs, measure)
        ax.axhline(
            float(np.mean([c[measure] for c in ceilings])), color="k", ls="--", lw=1, label="whole pool labelled"
        )
        if measure == "map":
            ax.axhline(float(np.mean([c["chance"] for c in ceilings])), color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel("labelled windows (each answered with all its labels)")
        ax.set_ylabel(f"held-out clip {what}")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--per-speaker", type=int, default=100, help="clips synthesised per FSDD speaker")
    parser.add_argument("--max-take", type=int, default=49, help="FSDD takes 0..N of each digit used for speech")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folds", type=int, default=None, help="only the first N folds (speakers)")
    parser.add_argument("--budget", type=int, default=100, help="labelled windows to stop at (capped by the pool)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/active-learning-multilabel"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/al_multilabel.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/active_learning_multilabel.png"))
    args = parser.parse_args()
    for s in args.strategies:
        Strategy.parse(s)
    args.work.mkdir(parents=True, exist_ok=True)
    logs = args.work / "labels"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    corpus = open_corpus(args)
    speakers = [str(s) for s in sorted(set(corpus.folds))][: args.folds]
    clips = len(set(corpus.recordings.tolist()))
    shares = ", ".join(f"{label} {corpus.truth[:, j].mean():.0%}" for j, label in enumerate(LABELS))
    print(f"{len(corpus.ids)} windows, {clips} clips, folds {speakers}; windows with each label: {shares}", flush=True)
    runs: list[Run] = []
    ceilings: list[dict[str, float]] = []
    with threadpool_limits(1):  # tiny fits: BLAS threads only fight on 2 shared cores
        for fold in speakers:
            pool, held = np.flatnonzero(corpus.folds != fold), np.flatnonzero(corpus.folds == fold)
            ceiling = score(corpus, pool, truth_targets(corpus, pool), held)
            recs, inverse = np.unique(corpus.recordings[held], return_inverse=True)
            truth = np.zeros((len(recs), len(LABELS)))
            truth[inverse] = corpus.truth[held]
            ceiling["chance"] = float(truth.mean(axis=0).mean())  # a constant ranking's AP is the prevalence
            ceilings.append(ceiling)
            print(f"fold {fold}: pool {len(pool)} windows, ceiling mAP {ceiling['map']:.3f}", flush=True)
            for seed in args.seeds:
                for strategy in args.strategies:
                    t0 = time.perf_counter()
                    run = simulate(corpus, fold, strategy, seed, args.budget, logs)
                    runs.append(run)
                    curve = " ".join(f"{k}:{v:.2f}" for k, v in zip(run.n_labels, run.values["map"], strict=True))
                    took = time.perf_counter() - t0
                    what = f"fold {fold} seed {seed} {strategy:8s} ({took:.0f} s, {run.answers[-1]} answers)"
                    print(f"{what} mAP {curve}", flush=True)
    corpus.index.close()
    wall = time.perf_counter() - started
    answers = np.mean([r.answers[-1] for r in runs])
    title = f"multi-label speech+sounds, leave one speaker out ({len(runs)} runs, builtin encoder)"
    text = "\n\n".join(
        f"{what} on the held-out speaker's clips (clip level):\n\n" + table(runs, ceilings, args.budget, measure, what)
        for measure, what in MEASURES
    )
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    footer = (
        f"{len(runs)} runs ({len(speakers)} folds x {len(args.seeds)} seeds x {len(args.strategies)} strategies); "
        f"{answers:.0f} label answers on average at {max(r.n_labels[-1] for r in runs)} labelled windows.\n\n"
        f"Command: `{command}`\n\nWall time: {wall:.0f} s (index build included) on {cpu_model()}, "
        f"{len(corpus.ids)} windows of {clips} clips."
    )
    print("\n" + text + "\n\n" + footer, flush=True)
    args.out.write_text(f"# Active learning, multi-label sounds\n\n{text}\n\n{footer}\n")
    plot(runs, ceilings, args.plot, title)


if __name__ == "__main__":
    main()
