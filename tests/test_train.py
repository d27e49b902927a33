from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from audioclf.errors import TrainingError
from audioclf.fitting.data import Dataset, grouped_split
from audioclf.fitting.probe import FitOptions, predict_logits
from audioclf.fitting.selection import SelectOptions, refit, select
from audioclf.io.manifest import Item


def blobs(n_per_class: int, n_classes: int = 3, layers: int = 3, dim: int = 8, seed: int = 0):
    """Separable only in the middle layer: the weighted layer sum must find it."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.standard_normal((len(y), layers, dim)).astype(np.float32)
    x[:, 1, :n_classes] += 3.0 * np.eye(n_classes, dtype=np.float32)[y]
    return torch.from_numpy(x), y


def blob_data(n_per_class: int, seed: int = 0, y: np.ndarray | None = None) -> Dataset:
    """One window per recording, three recordings per group."""
    x, blob_y = blobs(n_per_class, seed=seed)
    y = blob_y if y is None else y
    items = [Item(f"/r{i}.wav", str(lab), None, f"g{i // 3}", f"m.csv:{i + 2}") for i, lab in enumerate(y)]
    return Dataset(x, y, np.arange(len(y)), items)


@pytest.mark.parametrize(
    "options",
    [SelectOptions(layer="1", hidden=0, lr=1e-2), SelectOptions(layer="weighted", hidden=16, lr=3e-3)],
)
def test_probe_learns_separable_data(options: SelectOptions) -> None:
    data = blob_data(60)
    fit = FitOptions(max_epochs=80, patience=80)
    chosen = select(data, 3, replace(options, fit=fit, progress=False)).chosen
    head, result = refit(data, 3, chosen, fit)
    assert result.best_f1 >= 0.9 and result.best_val_acc >= 0.9  # cross-validated on held-out groups
    assert result.history[0].train_loss > result.history[-1].train_loss
    xv, yv = blobs(20, seed=1)
    assert (predict_logits(head, xv.numpy()).argmax(1) == yv).mean() >= 0.9  # and on data it never saw
    if options.layer == "weighted":
        weights = torch.softmax(head.layer_logits, 0)
        assert int(weights.argmax()) == 1  # the informative layer gets the most weight


def test_probe_cannot_learn_noise_labels() -> None:
    data = blob_data(40, y=np.random.default_rng(5).integers(0, 3, 120))
    fit = FitOptions(max_epochs=30, patience=30)
    chosen = select(data, 3, SelectOptions(layer="last", hidden=0, lr=1e-3, fit=fit, progress=False)).chosen
    assert chosen.accuracy.mean() < 0.7  # no leak from train to the held-out groups


def test_grouped_split_never_shares_a_group() -> None:
    labels = [str(i % 3) for i in range(60)]
    groups = [f"g{i // 6}" for i in range(60)]
    keep, held = grouped_split(labels, groups, 0.2, seed=0)
    assert len(keep) + len(held) == 60 and len(held) > 0
    assert not {groups[i] for i in keep} & {groups[i] for i in held}
    assert {labels[i] for i in held} == {"0", "1", "2"}


def test_grouped_split_needs_two_groups() -> None:
    with pytest.raises(TrainingError, match="at least 2"):
        grouped_split(["a", "b"], ["g", "g"], 0.2)
