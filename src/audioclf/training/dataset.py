"""Window-level arrays of embedded recordings, and their grouped splits (validation, held-out test)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audioclf.errors import TrainingError
from audioclf.fileio import write_csv_atomic
from audioclf.io.cache import Embedded
from audioclf.io.manifest import Item
from audioclf.training.splits import grouped_split


@dataclass(frozen=True)
class Dataset:
    """Window-level arrays of embedded recordings."""

    x: torch.Tensor  # [n_windows, n_layers, dim]
    y: np.ndarray  # [n_windows] class ids
    recording: np.ndarray  # [n_windows] recording index
    items: list[Item]  # one per recording

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
        return Dataset(self.x[mask], self.y[mask], remap[self.recording[mask]], [self.items[i] for i in recordings])


def stack(embedded: Sequence[tuple[Item, Embedded]], labels: Sequence[str]) -> Dataset:
    index = {label: i for i, label in enumerate(labels)}
    x = np.concatenate([e.embeddings for _, e in embedded])
    y = np.concatenate([np.full(len(e.embeddings), index.get(item.label or "", -1)) for item, e in embedded])
    rec = np.concatenate([np.full(len(e.embeddings), i) for i, (_, e) in enumerate(embedded)])
    return Dataset(torch.from_numpy(x), y, rec, [item for item, _ in embedded])


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
    test = data.subset(held)
    if out is not None:
        rows = [{"path": i.source, "label": i.label, "split": "test", "group": i.group} for i in test.items]
        write_csv_atomic(out / "test_split.csv", ["path", "label", "split", "group"], rows)
    return data.subset(keep), test
