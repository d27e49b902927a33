"""Does the quick model's ranking of strategies carry over to the final model? The labelling loop of issue 30
through the real commands: ``audioclf index`` -> rounds of ``audioclf suggest --json`` answered by a simulated
labeller -> ``audioclf train`` -> ``audioclf evaluate`` on a held-out speaker.

    .venv/bin/python bench/label_loop.py                          # FSDD, 3 speakers held out in turn, 1 seed
    .venv/bin/python bench/label_loop.py --folds 1 --strategies diverse random    # a smoke test

FSDD digits (label digit, group speaker), leave one speaker out (``--folds N``: the first N speakers). For each
held-out speaker, ``audioclf index --manifest pool.csv`` indexes the *other* speakers' clips only (builtin
encoder, the index's defaults): the held-out speaker is never in the index, so ``suggest`` cannot hand it out
and the index's vector statistics never saw it. For each strategy and seed, a fresh ``labels.csv``
(``audioclf.Labels`` bound to the index) gets one clip per digit drawn at random from the pool (seeded, the
same for every strategy), then each round runs

    audioclf suggest IDX --labels labels.csv --n 10 --strategy S --json --annotator sim --seed K

(a subprocess; one JSON object a line), and the simulated labeller answers each suggested window with its true
label: ``Labels.add(row, "label", row.label, annotator="sim", origin="suggestion")`` with ``row`` from
``Index.open(IDX).store.rows([...])`` (the index keeps the manifest's labels, so it never errs). At each budget
(``--budgets``, default 20 and 50 labels):

- **quick**: what ``bench/active_learning.py`` scores: ``QuickModel`` (what ``suggest`` fits) on the labelled
  windows' prepared vectors, scored on the held-out speaker's clips (embedded with ``Index.embed_examples`` and
  prepared with the pool index's statistics; a clip's windows' probabilities meaned), recording accuracy;
- **final**: ``audioclf train --manifest labels.csv --out DIR --encoder builtin`` (its grouped cross-validation
  runs on labels.csv's group column, the index's group: the speaker, so 2 groups and 2 folds) and
  ``audioclf evaluate --model DIR --manifest heldout.csv``: the recording accuracy of its report.json. Beside
  it, ``train``'s own cross-validation accuracy (what it printed: 2 grouped folds over the labels' 2 speakers).

The table gives both as mean ± sd over held-out speakers x seeds, and ``Δ random`` (paired: same speaker, same
seed, same starting labels) ± 1.96 standard errors; with 3 speakers and 1 seed that interval is rough, so read
the rank of each column and whether quick and final agree, not small differences. Commands run with the venv's
Python (``python -m audioclf``, ``--cli`` to change it); each train + evaluate takes 8-15 s on 2 shared cores, the
whole default run about 4-5 minutes (``--seeds 0 1 2``: about 13). Work files under ``--work``. The commands
inherit the environment: to measure a fixed library while ``src/`` is being edited, put a snapshot of it first
on ``PYTHONPATH`` (``git archive HEAD src | tar -x -C /tmp/snap``; ``PYTHONPATH=/tmp/snap/src``), or a ``train``
and an ``evaluate`` of two different working-tree states can disagree on the model format.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_vs_logreg import fsdd_items

from audioclf import Labels
from audioclf.annotation.suggest import QuickModel, Strategy
from audioclf.corpus.index import Example, Index
from audioclf.corpus.similarity import prepare
from audioclf.io.manifest import Item

SIMULATED = "sim"
ROUND = 10


@dataclass
class Run:
    speaker: str
    strategy: str
    seed: int
    quick: dict[int, float] = field(default_factory=dict)  # budget -> held-out recording accuracy
    final: dict[int, float] = field(default_factory=dict)
    cv: dict[int, float] = field(default_factory=dict)  # budget -> train's own cross-validation accuracy
    seconds: dict[int, float] = field(default_factory=dict)  # budget -> train + evaluate wall time


def cli(args: argparse.Namespace, *words: str) -> subprocess.CompletedProcess[str]:
    command = [*args.cli, *words, "--cache-dir", str(args.work / "cache")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"FAILED ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr}", flush=True)
        raise SystemExit(done.returncode)
    return done


def write_manifest(path: Path, items: list[Item]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "group"])
        writer.writerows([i.source, i.label, i.group] for i in items)


def held_out_vectors(index: Index, items: list[Item]) -> list[np.ndarray]:
    """Each held-out clip's windows, embedded by the index's encoder and prepared with the index's statistics
    (the clips are not in the index)."""
    stats = index.exact_arrays()[3]
    raw = index.embed_examples([Example(i.source) for i in items])
    return [prepare(v, index.card.similarity, stats) for v in raw]


def quick_accuracy(
    prepared: np.ndarray, labels: list[str], held: list[np.ndarray], truth: list[str]
) -> float:  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = QuickModel(prepared, labels)
    guesses = [model.classes[int(model.proba(v).mean(axis=0).argmax())] for v in held]
    return float(np.mean([g == t for g, t in zip(guesses, truth, strict=True)]))


def train_and_evaluate(
    args: argparse.Namespace, labels_csv: Path, heldout: Path, folder: Path
) -> tuple[float, float]:  # fmt: skip
    model, report = folder / "model", folder / "evaluation"
    done = cli(args, "train", "--manifest", str(labels_csv), "--out", str(model), "--force", "--encoder", "builtin",
               "--quiet")  # fmt: skip
    said = re.search(r"^cross-validation accuracy ([0-9.]+)", done.stdout, re.MULTILINE)
    cv = float(said.group(1)) if said else float("nan")  # train's own estimate, on the labels' 2 speakers
    cli(args, "evaluate", "--model", str(model), "--manifest", str(heldout), "--out", str(report), "--quiet")
    rec = json.loads((report / "report.json").read_text())["recording"]
    return float(rec["accuracy"]), cv


def loop(
    args: argparse.Namespace,
    index_dir: Path,
    index: Index,
    held: list[np.ndarray],
    held_items: list[Item],
    heldout: Path,
    speaker: str,
    strategy: str,
    seed: int,
) -> Run:
    ids, _, prepared, _ = index.exact_arrays()
    where = {int(i): p for p, i in enumerate(ids)}
    rows = index.store.rows([int(i) for i in ids])
    truth = {int(i): rows[int(i)].label or "" for i in ids}
    folder = args.work / speaker / f"{strategy.replace(':', '_')}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    labels_csv = folder / "labels.csv"
    labels = Labels(labels_csv, index.card.id)
    rng = np.random.default_rng(seed)
    labelled: list[int] = []
    for digit in sorted(set(truth.values())):  # one clip per class, at random from the pool
        labelled.append(int(rng.choice([i for i in truth if truth[i] == digit])))
    for w in labelled:
        labels.add(rows[w], "label", truth[w], annotator=SIMULATED, origin="random")
    run = Run(speaker, strategy, seed)
    step = 0
    while len(labelled) < max(args.budgets):
        next_budget = min(b for b in args.budgets if b > len(labelled))
        n = min(ROUND - len(labelled) % ROUND, next_budget - len(labelled))
        done = cli(args, "suggest", str(index_dir), "--labels", str(labels_csv), "--n", str(n), "--strategy",
                   strategy, "--json", "--annotator", SIMULATED, "--seed", str(seed * 1000 + step))  # fmt: skip
        step += 1
        chosen = [int(json.loads(line)["id"]) for line in done.stdout.splitlines() if line.startswith("{")]
        if not chosen:
            print(f"{speaker} {strategy}: suggest gave nothing at {len(labelled)} labels", flush=True)
            break
        assert not set(labelled).intersection(chosen), "suggest returned a labelled window"
        found = index.store.rows(chosen)
        for w in chosen:
            labels.add(found[w], "label", found[w].label, annotator=SIMULATED, origin="suggestion")
        labelled += chosen
        if len(labelled) in args.budgets:
            b = len(labelled)
            x = prepared[[where[w] for w in labelled]]
            run.quick[b] = quick_accuracy(x, [truth[w] for w in labelled], held, [i.label or "" for i in held_items])
            started = time.perf_counter()
            run.final[b], run.cv[b] = train_and_evaluate(args, labels_csv, heldout, folder / f"at{b}")
            run.seconds[b] = time.perf_counter() - started
            print(f"{speaker} seed {seed} {strategy:8s} @{b}: quick {run.quick[b]:.3f}  final {run.final[b]:.3f}  "
                  f"(train's CV {run.cv[b]:.3f}; train+evaluate {run.seconds[b]:.0f} s)", flush=True)  # fmt: skip
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        in_csv = sum(1 for _ in csv.DictReader(fh))
    assert in_csv == len(labelled), f"labels.csv holds {in_csv} rows, the simulation labelled {len(labelled)}"
    labels.close()
    return run


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def delta(runs: list[Run], randoms: dict[tuple[str, int], Run], which: str, b: int) -> str:
    pairs = [
        getattr(r, which)[b] - getattr(rr, which)[b]
        for r in runs
        if (rr := randoms.get((r.speaker, r.seed))) is not None and b in getattr(r, which) and b in getattr(rr, which)
    ]
    if not pairs:
        return "–"
    half = 1.96 * np.std(pairs, ddof=1) / np.sqrt(len(pairs)) if len(pairs) > 1 else float("nan")
    return f"{np.mean(pairs):+.3f} ± {half:.3f}"


def table(runs: list[Run], budgets: list[int]) -> str:
    head = ["strategy", "labels", "quick model acc", "final (train+evaluate) acc", "quick Δ random", "final Δ random",
            "train's CV acc", "runs"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    randoms = {(r.speaker, r.seed): r for r in runs if r.strategy == "random"}
    for strategy in dict.fromkeys(r.strategy for r in runs):
        these = [r for r in runs if r.strategy == strategy]
        for b in budgets:
            quick = [r.quick[b] for r in these if b in r.quick]
            final = [r.final[b] for r in these if b in r.final]
            is_random = strategy == "random"
            dq = "–" if is_random else delta(these, randoms, "quick", b)
            df = "–" if is_random else delta(these, randoms, "final", b)
            cv = cell([r.cv[b] for r in these if b in r.cv])
            lines.append(f"| {strategy} | {b} | {cell(quick)} | {cell(final)} | {dq} | {df} | {cv} | {len(final)} |")
    return "\n".join(lines)


def ranks(runs: list[Run], budgets: list[int]) -> list[str]:
    """Per budget: the strategies in order of mean quick accuracy and of mean final accuracy."""
    out = []
    for b in budgets:
        for which in ("quick", "final"):
            means = {
                s: float(np.mean([getattr(r, which)[b] for r in runs if r.strategy == s and b in getattr(r, which)]))
                for s in dict.fromkeys(r.strategy for r in runs)
            }
            order = " > ".join(f"{s} {m:.3f}" for s, m in sorted(means.items(), key=lambda kv: -kv[1]))
            out.append(f"@{b} {which:5s}: {order}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--strategies", nargs="+", default=["diverse", "margin", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", type=int, default=None, help="only the first N held-out speakers")
    parser.add_argument("--budgets", nargs="+", type=int, default=[20, 50], help="labels at which to train")
    parser.add_argument("--work", type=Path, default=Path("/tmp/label-loop"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/label_loop.md"))
    parser.add_argument("--cli", nargs="+", default=[sys.executable, "-m", "audioclf"], help="how to run audioclf")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.budgets = sorted(set(args.budgets))
    for s in args.strategies:
        Strategy.parse(s)
    args.work.mkdir(parents=True, exist_ok=True)
    items = fsdd_items(args.fsdd, "digits")
    speakers = sorted({i.group for i in items})[: args.folds]
    runs: list[Run] = []
    started = time.perf_counter()
    with threadpool_limits(1):  # the in-process quick fits; the commands run as a user would run them
        for speaker in speakers:
            pool = [i for i in items if i.group != speaker]
            held_items = [i for i in items if i.group == speaker]
            folder = args.work / speaker
            folder.mkdir(parents=True, exist_ok=True)
            pool_csv, heldout = folder / "pool.csv", folder / "heldout.csv"
            write_manifest(pool_csv, pool)
            write_manifest(heldout, held_items)
            index_dir = folder / "index"
            t = time.perf_counter()
            cli(args, "index", "--manifest", str(pool_csv), "--out", str(index_dir), "--encoder", "builtin", "--quiet")
            index = Index.open(index_dir, cache_dir=args.work / "cache")
            assert not {r.source for r in index.store.rows([int(i) for i in index.exact_arrays()[0]]).values()} & {
                i.source for i in held_items
            }, "a held-out clip is in the pool index"
            held = held_out_vectors(index, held_items)
            print(f"held out {speaker}: index of {len(index)} pool windows, {len(held)} held-out clips embedded "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
            for seed in args.seeds:
                for strategy in args.strategies:
                    runs.append(loop(args, index_dir, index, held, held_items, heldout, speaker, strategy, seed))
            index.close()
    text = table(runs, args.budgets) + "\n\nRanking (mean accuracy):\n\n" + "\n".join(ranks(runs, args.budgets))
    took = time.perf_counter() - started
    print(f"\n{text}\n\n{len(runs)} runs, {took:.0f} s", flush=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
