"""`audioclf crossval`: train and evaluate per fold, one line per fold and the pooled summary."""

from __future__ import annotations

import argparse

from audioclf.cli.options import emit
from audioclf.cli.train import train_options
from audioclf.crossvalidation.report import describe
from audioclf.crossvalidation.run import CrossvalOptions, FoldResult, crossval
from audioclf.errors import TrainingError
from audioclf.evaluation.report import summary_lines


def cmd_crossval(args: argparse.Namespace) -> int:
    if args.mode == "finetune":
        raise TrainingError(
            "crossval cross-validates the probe; --mode finetune is not supported there "
            "(run train --mode finetune on the fold manifests in <out>/folds/ instead)"
        )
    options = CrossvalOptions(args.cv_folds, args.fold_column, train_options(args), args.force, args.seed)
    r = crossval(args.manifest, args.out, options, on_fold=_fold_line)
    emit()
    emit(f"{'fold':>4}  {'held out':<16} {'recordings':>10} {'accuracy':>8} {'macro-F1':>8}  probe")
    for f in r.folds:
        acc, f1 = (f"{v:.3f}" if v is not None else "n/a" for v in (f.accuracy, f.macro_f1))
        emit(f"{f.fold:>4}  {_held_out(f)[:16]:<16} {f.n_test:>10} {acc:>8} {f1:>8}  {f.config}")
    over = r.over_folds
    emit(
        f"over {over['accuracy']['n_folds']} folds (mean ± std): accuracy {describe(over['accuracy'])}, "
        f"macro-F1 {describe(over['macro_f1'])}"
    )
    emit()
    emit(f"pooled out-of-fold predictions of all {len(r.folds)} folds (CI: bootstrap over groups):")
    for line in summary_lines(r.report):
        emit(line)
    emit(f"folds       {r.folds_from}")
    emit(f"encoder     {r.encoder}" + (" (fallback)" if r.fallback_reason else ""))
    see = f" — see {r.out / 'failures.csv'}" if r.failures else ""
    emit(f"data        {r.n_rows} rows, {len(r.failures)} failed{see}")
    emit("wrote       " + ", ".join(str(p) for p in r.paths) + f", and per fold {r.out}/fold_<k>/report/")
    return 0


def _held_out(f: FoldResult) -> str:
    """The fold's value in --fold-column, else its groups (a few by name)."""
    if f.name != str(f.fold):
        return f.name
    return ", ".join(f.groups) if len(f.groups) <= 3 else f"{len(f.groups)} groups"


def _fold_line(f: FoldResult) -> None:
    held = _held_out(f)
    if f.accuracy is None:
        emit(f"fold {f.fold}/{f.n_folds}  held out {held}: no recording could be read")
        return
    when = "kept from an earlier run" if f.reused else f"{f.seconds:.1f} s"
    emit(
        f"fold {f.fold}/{f.n_folds}  held out {held}: {f.n_test} recordings  accuracy {f.accuracy:.3f}  "
        f"macro-F1 {f.macro_f1:.3f}  probe {f.config}  ({when})"
    )
