"""The files of a cross-validation: the pooled report with a fold table, failures.csv and crossval.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from audioclf.fileio import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from audioclf.crossvalidation.run import CrossvalResult

T_NOTE = "mean ± sample std of the K fold scores; t-interval: mean ± t(0.975, K-1)·std/√K, clipped to [0, 1]"
POOLED_NOTE = "every fold's held-out predictions; its accuracy CI is a percentile bootstrap over whole groups"


class OverFolds(TypedDict):
    """A score's spread over the folds (crossval.json's "over_folds")."""

    mean: float
    std: float  # sample std; 0 with one fold
    t_interval: list[float] | None  # Student-t interval of the mean, clipped to [0, 1]; None with one fold
    n_folds: int


class Pooled(TypedDict):
    """crossval.json's "pooled": the recording level of the report of every fold's held-out predictions."""

    n: int
    accuracy: float
    accuracy_ci: list[float] | None
    ci_resamples: str
    balanced_accuracy: float
    macro_f1: float
    ci: float
    note: str


class CrossvalSummary(TypedDict):
    """crossval.json."""

    manifest: str
    n_rows: int
    labels: list[str]
    encoder: str
    fallback_reason: str | None
    folds_from: str
    folds: list[dict[str, object]]  # each fold's FoldResult, field by field
    over_folds: dict[str, OverFolds | str]  # accuracy, macro_f1 and a note on how they were computed
    pooled: Pooled
    report: str  # the pooled report.json
    n_failed: int


def over_folds(values: Sequence[float], ci: float = 0.95) -> OverFolds:
    """Mean, sample std and a Student-t interval of a per-fold score (treating the folds as independent)."""
    n, mean = len(values), float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    interval = None
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.5 + ci / 2, n - 1)) * std / math.sqrt(n)
        interval = [max(0.0, mean - half), min(1.0, mean + half)]
    return {"mean": mean, "std": std, "t_interval": interval, "n_folds": n}


def describe(stats: OverFolds) -> str:
    """``0.850 ± 0.030 (95% t-interval 0.78–0.92)``: a score over folds, for terminals and report.md."""
    interval = stats["t_interval"]
    tail = f" (95% t-interval {interval[0]:.2f}\N{EN DASH}{interval[1]:.2f})" if interval else ""
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}{tail}"


def _markdown(r: CrossvalResult) -> list[str]:
    def cell(value: object) -> str:
        return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["", "## Folds", "", f"Folds from {r.folds_from}. Each fold's model was trained on the other folds.", ""]
    lines += ["| fold | name | recordings | groups | accuracy | macro-F1 | probe |", "|---|---|---|---|---|---|---|"]
    for f in r.folds:
        row = [f.fold, f.name, f.n_test, len(f.groups), f.accuracy, f.macro_f1, f.config]
        lines.append("| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |")
    acc, f1 = r.over_folds["accuracy"], r.over_folds["macro_f1"]
    lines += ["", f"Over the folds: accuracy {describe(acc)}, macro-F1 {describe(f1)} ({T_NOTE}).", ""]
    lines += [f"The summary at the top pools {POOLED_NOTE}."]
    return lines


def write_outputs(r: CrossvalResult, manifest: Path) -> list[Path]:
    """report/ (pooled, with the fold table in report.md), failures.csv and crossval.json."""
    from audioclf.evaluation.metrics import jsonable
    from audioclf.evaluation.report import write_report
    from audioclf.extraction.embed import write_failures

    context = {"crossval": str(r.out / "crossval.json"), "manifest": str(manifest), "encoder": r.encoder}
    paths = write_report(r.report, r.out / "report", title="audioclf cross-validation (pooled)", context=context)
    write_text_atomic(paths[1], paths[1].read_text() + "\n".join(_markdown(r)) + "\n")
    failures = r.out / "failures.csv"
    if r.failures:
        write_failures(r.failures, failures)
        paths.append(failures)
    else:
        failures.unlink(missing_ok=True)  # from an earlier run
    write_json_atomic(r.out / "crossval.json", jsonable(_summary(r, manifest)))
    return [r.out / "crossval.json", *paths]


def _summary(r: CrossvalResult, manifest: Path) -> CrossvalSummary:
    rec = r.report["recording"]
    pooled: Pooled = {
        "n": rec["n"],
        "accuracy": rec["accuracy"],
        "accuracy_ci": rec["accuracy_ci"],
        "ci_resamples": rec["ci_resamples"],
        "balanced_accuracy": rec["balanced_accuracy"],
        "macro_f1": rec["macro_f1"],
        "ci": r.report["ci"],
        "note": POOLED_NOTE,
    }
    return {
        "manifest": str(manifest),
        "n_rows": r.n_rows,
        "labels": r.labels,
        "encoder": r.encoder,
        "fallback_reason": r.fallback_reason,
        "folds_from": r.folds_from,
        "folds": [{**asdict(f), "out": str(f.out)} for f in r.folds],
        "over_folds": {**r.over_folds, "note": T_NOTE},
        "pooled": pooled,
        "report": str(r.out / "report" / "report.json"),
        "n_failed": len(r.failures),
    }
