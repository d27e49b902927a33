"""A probe on cached embeddings: layer choice (one layer or a learned weighted sum), then linear or MLP head."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audioclf.fitting.defaults import PROBE_MAX_EPOCHS, PROBE_PATIENCE
from audioclf.model.probe_config import CONSTANT_STD, LAST, MEAN, WEIGHTED, ProbeConfig


@dataclass(frozen=True)
class FitOptions:
    max_epochs: int = PROBE_MAX_EPOCHS
    patience: int = PROBE_PATIENCE  # epochs without a better validation score before stopping
    batch_size: int = 64
    balanced: bool = False  # class weights inversely proportional to class frequency
    seed: int = 0


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    seconds: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_f1: float

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> EpochStats:
        """Back from ``asdict`` (a checkpoint's history, read from JSON)."""
        return cls(int(data["epoch"]), **{k: float(v) for k, v in data.items() if k != "epoch"})


@dataclass(frozen=True)
class FitResult:
    state: dict[str, torch.Tensor]  # weights at the best epoch
    best_epoch: int
    best_f1: float
    best_val_acc: float
    history: list[EpochStats]


class ProbeHead(nn.Module):
    """z-score per (layer, feature) with training statistics -> layer choice -> linear or MLP classifier."""

    def __init__(self, n_layers: int, dim: int, n_classes: int, config: ProbeConfig) -> None:
        super().__init__()
        self.config = config
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(n_layers, dim))
        self.register_buffer("std", torch.ones(n_layers, dim))
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))  # used by the "weighted" layer choice
        if config.hidden:
            self.classifier: nn.Module = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(dim, config.hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, n_classes),
            )
        else:
            self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(dim, n_classes))

    def set_normalisation(self, x: torch.Tensor) -> None:
        """Training mean and std per (layer, feature). A feature constant in training keeps its scale (std 1,
        as scikit-learn's StandardScaler does): dividing by a clamped ~0 std turned a small shift on another
        speaker into z-scores of 60,000, which a torch head's untrained weights on that feature multiplied."""
        std = x.std(0) if len(x) > 1 else torch.zeros_like(x[0])
        self.mean.copy_(x.mean(0))
        self.std.copy_(torch.where(std < CONSTANT_STD, torch.ones_like(std), std))

    def pool_layers(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.config.layer == WEIGHTED:
            return (torch.softmax(self.layer_logits, 0)[None, :, None] * x).sum(1)
        if self.config.layer == MEAN:
            return x.mean(1)
        index = -1 if self.config.layer == LAST else int(self.config.layer)
        return x[:, index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool_layers(x))


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class ProbeTrainer:
    """One head, its optimiser and loss: trained an epoch at a time (cross-validation steps k of them together)."""

    def __init__(self, head: ProbeHead, train: tuple[torch.Tensor, np.ndarray], options: FitOptions) -> None:
        self.head, self.options = head, options
        self.x, y = train
        self.y = torch.as_tensor(y, dtype=torch.long)
        n_classes = head.classifier[-1].out_features  # type: ignore[index]
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights(y, n_classes) if options.balanced else None)
        config = head.config
        self.optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def epoch(self) -> tuple[float, float]:
        """One pass over the training windows in a random order: (mean loss, accuracy)."""
        head, x, y = self.head, self.x, self.y
        head.train()
        order = torch.randperm(len(x))
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), self.options.batch_size):
            idx = order[start : start + self.options.batch_size]
            logits = head(x[idx])
            loss = self.loss_fn(logits, y[idx])
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        return total_loss / len(x), correct / len(x)


@torch.no_grad()
def predict_logits(head: ProbeHead, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    head.eval()
    outs = [head(torch.as_tensor(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)
