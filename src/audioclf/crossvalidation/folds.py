"""Cross-validation folds of a manifest: grouped and stratified, or read from a column; one CSV per fold."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audioclf.errors import ManifestError, TrainingError
from audioclf.io.manifest import Item, column_values

log = logging.getLogger(__name__)

HEADER = ["path", "label", "split", "group", "start", "end"]


def fold_group(item: Item) -> str:
    """What must stay in one fold: the row's group (a URL row without one: its video or playlist)."""
    return item.group or item.source


def assign_folds(
    items: Sequence[Item], manifest: Path, folds: int, seed: int, column: str | None = None
) -> tuple[np.ndarray, list[str], str]:
    """(the fold 0..K-1 of each item, the folds' names, how they were made); no group is in two folds.

    Without ``column``: ``folds`` folds (fewer when there are fewer groups) from scikit-learn's
    StratifiedGroupKFold, shuffled with ``seed``. With ``column``: one fold per value of that manifest column
    (``group``: one fold per group)."""
    if column is not None:
        return _column_folds(items, manifest, column)
    if folds < 2:
        raise TrainingError(f"{folds} folds: cross-validation needs at least 2 folds", option="folds")
    groups = np.array([fold_group(item) for item in items])
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise TrainingError(
            f"{manifest}: all {len(items)} rows are in one group ({groups[0]}); cross-validation needs at least 2 "
            "groups: give a 'group' column (speaker, video) with several values, or more files"
        )
    k = min(folds, n_groups)
    if k < folds:
        log.warning("only %d groups in %s: %d folds instead of %d", n_groups, manifest, k, folds)
    fold = _stratified(np.array([item.label or "" for item in items]), groups, k, seed)
    return fold, [str(n + 1) for n in range(k)], f"StratifiedGroupKFold(n_splits={k}, shuffle, seed={seed}) on group"


def _stratified(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    from audioclf.fitting.data import grouped_kfold  # scikit-learn: imported when a run starts, not with audioclf

    fold = np.full(len(y), -1)
    for n, (_, held) in enumerate(grouped_kfold(y, groups, k, seed)):
        fold[held] = n
    return fold


def _natural(value: str) -> tuple[int, int, str]:
    """Sort key: numbers in numeric order (fold 2 before fold 10), then other names."""
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def _column_folds(items: Sequence[Item], manifest: Path, column: str) -> tuple[np.ndarray, list[str], str]:
    if column.strip().lower() == "group":
        values = [fold_group(item) for item in items]
    else:
        by_row = column_values(manifest, column)
        missing = next((item for item in items if item.where not in by_row), None)
        if missing is not None:
            raise ManifestError(
                f"{missing.where}: empty {column!r}; the fold column needs a fold on every row", option="fold_column"
            )
        values = [by_row[item.where] for item in items]
    names = sorted(set(values), key=_natural)
    if len(names) < 2:
        raise TrainingError(
            f"{manifest}: every row has {column} {names[0]!r}; cross-validation needs at least 2 folds "
            "(values of the fold column)",
            option="fold_column",
        )
    if len(names) > 20:
        log.warning("fold column %s has %d values: %d folds, one model each", column, len(names), len(names))
    index = {name: n for n, name in enumerate(names)}
    fold = np.array([index[value] for value in values])
    first: dict[str, int] = {}
    for item, f in zip(items, fold.tolist(), strict=True):
        other = first.setdefault(fold_group(item), f)
        if other != f:
            raise ManifestError(
                f"{item.where}: group {fold_group(item)!r} is in {column} {names[other]!r} and {names[f]!r}, so it "
                f"would be on both sides of a fold; put all of a group's rows in one {column}"
            )
    return fold, names, f"manifest column {column!r}"


def fold_manifest(items: Sequence[Item], held: np.ndarray) -> str:
    """The CSV text of one fold: every row with its absolute path or URL, split=test on the held-out ones."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for item, test in zip(items, held.tolist(), strict=True):
        start, end = ("" if s is None else repr(s) for s in (item.start_s, item.end_s))
        writer.writerow([item.source, item.label, "test" if test else "", item.group, start, end])
    return buf.getvalue()
