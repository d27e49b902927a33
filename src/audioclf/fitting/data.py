"""Window arrays of embedded recordings and their grouped, stratified splits (validation folds, held-out
test): no group (recording, speaker, video, fold) is ever on both sides."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

from audioclf.errors import TrainingError
from audioclf.fileio import write_csv_atomic
from audioclf.io.cache import Embedded
from audioclf.io.manifest import Item

log = logging.getLogger(__name__)


def grouped_split(
    labels: Sequence[str], groups: Sequence[str], fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with about ``fraction`` of the groups held out, stratified by label.

    Stratification uses StratifiedGroupKFold with round(1 / fraction) folds (fewer when there are fewer
    groups); when a class cannot be stratified it falls back to a plain grouped shuffle split and says so.
    """
    if not 0 < fraction < 1:
        raise TrainingError(f"split fraction must be between 0 and 1, got {fraction}")
    y_all, g_all = np.asarray(labels), np.asarray(groups)
    lone = sorted(lab for lab in set(labels) if len(set(g_all[y_all == lab])) < 2)
    if lone:
        # A label seen in one group only cannot be on both sides of a grouped split: it stays in training.
        log.warning(
            "label(s) %s occur in one group (recording/speaker/video) only: kept in training, never held out, "
            "so nothing measures them; add recordings from other groups",
            lone,
        )
        pinned = np.isin(g_all, g_all[np.isin(y_all, lone)])  # whole groups: a group never straddles the split
        rest = np.flatnonzero(~pinned)
        keep, held = _split(list(y_all[rest]), list(g_all[rest]), fraction, seed)
        return np.sort(np.concatenate([rest[keep], np.flatnonzero(pinned)])), np.sort(rest[held])
    return _split(labels, groups, fraction, seed)


def _split(labels: Sequence[str], groups: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_groups = len(set(groups))
    if n_groups < 2:
        raise TrainingError(
            f"only {n_groups} group in the data: a grouped split needs at least 2 (give a 'group' column or more files)"
        )
    y = np.asarray(labels)
    g = np.asarray(groups)
    n_splits = max(2, min(round(1 / fraction), n_groups))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only N members"
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, held = next(folds.split(np.zeros(len(y)), y, g))
    missing = sorted(set(y[keep]) ^ set(y)) if len(keep) else sorted(set(y))
    if missing or len(held) == 0:
        log.warning("labels %s could not be stratified across groups; using an unstratified grouped split", missing)
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, held = next(splitter.split(np.zeros(len(y)), y, g))
    return np.sort(keep), np.sort(held)


def train_val_indices(items: Sequence[Item], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows marked split=val form the validation set; otherwise a grouped, stratified split of the items."""
    marked = np.array([item.split == "val" for item in items])
    if marked.any():
        return np.flatnonzero(~marked), np.flatnonzero(marked)
    return grouped_split([item.label or "" for item in items], [item.group for item in items], fraction, seed)


def cv_folds(items: Sequence[Item], n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, stratified k-fold (train, validation) indices of the items; rows marked split=val, when there are
    any, form the one validation fold instead. Fewer folds when there are fewer groups; never a group on both
    sides of a fold."""
    marked = np.array([item.split == "val" for item in items])
    if marked.any():
        if marked.all():
            raise TrainingError("every training row has split=val; leave some rows for training")
        return [(np.flatnonzero(~marked), np.flatnonzero(marked))]
    y = np.array([item.label or "" for item in items])
    g = np.array([item.group for item in items])
    n_groups = len(set(g))
    if n_groups < 2:
        raise TrainingError(
            f"only {n_groups} group in the data: cross-validation needs at least 2 "
            "(give a 'group' column or more files)"
        )
    lone = sorted(str(lab) for lab in set(y) if len(set(g[y == lab])) < 2)
    if lone:
        log.warning(
            "label(s) %s occur in one group (recording/speaker/video) only: a fold that holds that group out "
            "cannot learn them; add recordings from other groups",
            lone,
        )
    return grouped_kfold(y, g, max(2, min(n_folds, n_groups)), seed)


def grouped_kfold(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (keep, held) index pairs from scikit-learn's StratifiedGroupKFold, shuffled with ``seed``; plain
    grouped folds when the labels cannot be stratified (every class has fewer members than folds, or the
    heuristic leaves a fold empty)."""
    x = np.zeros(len(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only N members"
        try:
            split = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels, groups))
        except ValueError:
            split = []
    if len(split) < k or any(len(held) == 0 for _, held in split):
        log.warning("the labels cannot be stratified over %d grouped folds; using unstratified grouped folds", k)
        split = list(GroupKFold(n_splits=k).split(x, labels, groups))
    return [(np.sort(keep), np.sort(held)) for keep, held in split]


@dataclass(frozen=True)
class Dataset:
    """Window-level arrays of embedded recordings."""

    x: torch.Tensor  # [n_windows, n_layers, dim]
    y: np.ndarray  # [n_windows] class ids
    recording: np.ndarray  # [n_windows] recording index
    items: list[Item]  # one per recording
    copies: np.ndarray | None = None  # [n_windows] True for training copies (fitting.context); None: none

    def recording_labels(self) -> np.ndarray:
        """The class id of each recording (its windows share it)."""
        labels = np.zeros(len(self.items), dtype=np.int64)
        labels[self.recording] = self.y
        return labels

    def subset(self, recordings: np.ndarray) -> Dataset:
        """Windows of the given recordings, renumbered 0..k-1."""
        remap = np.full(len(self.items), -1)
        remap[recordings] = np.arange(len(recordings))
        mask = remap[self.recording] >= 0
        copies = None if self.copies is None else self.copies[mask]
        items = [self.items[i] for i in recordings]
        return Dataset(self.x[mask], self.y[mask], remap[self.recording[mask]], items, copies)

    def clean(self) -> Dataset:
        """The recordings' own windows, without training copies: what validation, tests and the novelty
        detector measure (every recording keeps its own windows)."""
        if self.copies is None or not self.copies.any():
            return self
        own = ~self.copies
        return Dataset(self.x[own], self.y[own], self.recording[own], self.items, None)


def stack(embedded: Sequence[tuple[Item, Embedded]], labels: Sequence[str]) -> Dataset:
    index = {label: i for i, label in enumerate(labels)}
    x = np.concatenate([e.embeddings for _, e in embedded])
    y = np.concatenate([np.full(len(e.embeddings), index.get(item.label or "", -1)) for item, e in embedded])
    rec = np.concatenate([np.full(len(e.embeddings), i) for i, (_, e) in enumerate(embedded)])
    copies = np.concatenate([np.arange(len(e.embeddings)) >= len(e.embeddings) - e.n_copies for _, e in embedded])
    return Dataset(torch.from_numpy(x), y, rec, [item for item, _ in embedded], copies if copies.any() else None)


def hold_out_test(
    data: Dataset, test_size: float | None, seed: int, out: Path | None
) -> tuple[Dataset, Dataset | None]:
    """The original report's protocol: a grouped, stratified train/test split of videos (groups).

    The held-out rows are listed in ``out/test_split.csv`` (unless ``out`` is None: another view of the same
    recordings, whose split is the same) so that ``audioclf evaluate`` can reproduce it."""
    if test_size is None:
        return data, None
    groups = [item.group for item in data.items]
    n_groups = len(set(groups))
    fraction = test_size if test_size < 1 else test_size / n_groups
    if not 0 < fraction < 1:
        raise TrainingError(
            f"a test set of {test_size:g} groups: there are only {n_groups} groups; hold out fewer", option="test_size"
        )
    keep, held = grouped_split([item.label or "" for item in data.items], groups, fraction, seed)
    test = data.subset(held).clean()
    if out is not None:
        rows = [{"path": i.source, "label": i.label, "split": "test", "group": i.group} for i in test.items]
        write_csv_atomic(out / "test_split.csv", ["path", "label", "split", "group"], rows)
    return data.subset(keep), test
