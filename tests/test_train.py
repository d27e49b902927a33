from __future__ import annotations

import numpy as np
import pytest
import torch

from audioclf.errors import TrainingError
from audioclf.fitting.data import grouped_split
from audioclf.fitting.probe import FitOptions, ProbeHead, fit_probe, mean_by_recording
from audioclf.model.probe_config import ProbeConfig


def blobs(n_per_class: int, n_classes: int = 3, layers: int = 3, dim: int = 8, seed: int = 0):
    """Separable only in the middle layer: the weighted layer sum must find it."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.standard_normal((len(y), layers, dim)).astype(np.float32)
    x[:, 1, :n_classes] += 3.0 * np.eye(n_classes, dtype=np.float32)[y]
    return torch.from_numpy(x), y


@pytest.mark.parametrize("config", [ProbeConfig(layer="1", lr=1e-2), ProbeConfig(layer="weighted", hidden=16, lr=3e-3)])
def test_probe_learns_separable_data(config: ProbeConfig) -> None:
    x, y = blobs(40)
    xv, yv = blobs(20, seed=1)
    head = ProbeHead(3, 8, 3, config)
    head.set_normalisation(x)
    fit = fit_probe(head, (x, y), (xv, yv, np.arange(len(yv))), FitOptions(max_epochs=80, patience=80))
    assert fit.best_f1 >= 0.9 and fit.best_val_acc >= 0.9
    assert fit.history[0].train_loss > fit.history[-1].train_loss
    head.load_state_dict(fit.state)
    if config.layer == "weighted":
        weights = torch.softmax(head.layer_logits, 0)
        assert int(weights.argmax()) == 1  # the informative layer gets the most weight


def test_probe_cannot_learn_noise_labels() -> None:
    x, _ = blobs(40)
    y = np.random.default_rng(5).integers(0, 3, len(x))
    xv, _ = blobs(30, seed=2)
    yv = np.random.default_rng(6).integers(0, 3, len(xv))
    head = ProbeHead(3, 8, 3, ProbeConfig(layer="last"))
    head.set_normalisation(x)
    fit = fit_probe(head, (x, y), (xv, yv, np.arange(len(yv))), FitOptions(max_epochs=30, patience=30))
    assert fit.best_val_acc < 0.7  # no leak from train to validation


def test_mean_by_recording() -> None:
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(mean_by_recording(logits, np.array([0, 0, 1])).numpy(), [[2.0, 0.0], [0.0, 5.0]])


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
