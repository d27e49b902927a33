"""A multi-label probe: one standardised L2 logistic regression per label (sigmoid outputs, binary
cross-entropy), its C chosen by grouped cross-validation on mean average precision, and a per-label decision
threshold tuned on the out-of-fold probabilities. A recording has a label when any of its windows does."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve

from audioclf.evaluation.calibration import sigmoid
from audioclf.evaluation.multilabel_metrics import mean_average_precision
from audioclf.evaluation.pooling import recording_max
from audioclf.fitting.data import Dataset, cv_folds
from audioclf.fitting.logreg import ABSENT_CLASS_BIAS, MAX_ITER
from audioclf.fitting.probe import ProbeHead
from audioclf.fitting.selection import one_thread
from audioclf.io.manifest import Item
from audioclf.model.probe_config import LAST, LBFGS, WEIGHTED, ProbeConfig

C_GRID = (0.001, 0.01, 0.1, 1.0)
DEFAULT_THRESHOLD = 0.5  # a label with no positive out-of-fold recording keeps the plain sigmoid midpoint


def rarest_label_items(items: Sequence[Item], y: np.ndarray) -> list[Item]:
    """The items with their rarest label as the stratum, so grouped stratified folds spread every label as far
    as groups allow (a greedy stand-in for iterative stratification)."""
    counts = y.sum(0)
    rare = np.where(y > 0, counts[None, :], np.inf).argmin(1)
    return [replace(item, label=str(int(k))) for item, k in zip(items, rare, strict=True)]


class SearchRow(TypedDict):
    """One C of the search, as the model's training details list it."""

    c: float
    config: str
    cv_map: float  # recording-level mAP of the out-of-fold probabilities; NaN when no label had a positive


@dataclass(frozen=True)
class MultiLabelFit:
    head: ProbeHead
    c: float
    thresholds: np.ndarray  # [n_labels] on the sigmoid probability
    search: list[SearchRow]  # per C: the cross-validated mAP
    n_folds: int


def fit_multilabel(data: Dataset, y: np.ndarray, *, n_folds: int, seed: int, layer: str = LAST) -> MultiLabelFit:
    """Cross-validate C on grouped folds (recording-level mAP of out-of-fold probabilities), tune thresholds on
    the chosen C's out-of-fold probabilities, refit on every training recording."""
    # one regression per label: a single layer (the searched and learnt-weights choices are the last layer here)
    config = ProbeConfig(layer=LAST if layer in ("auto", WEIGHTED) else layer, fitter=LBFGS, hidden=0)
    folds = cv_folds(rarest_label_items(data.items, y), n_folds, seed)
    with one_thread():
        oof = {c: np.full(y.shape, np.nan) for c in C_GRID}
        for keep, held in folds:
            train, val = data.subset(keep), data.subset(held)
            for c in C_GRID:
                head = fit_head(train, y[keep], replace(config, c=c))
                logits = _window_logits(head, val.x)
                oof[c][held] = sigmoid(recording_max(logits, val.recording, len(held)))
        search = [_scores(c, oof[c], y) for c in C_GRID]
        best = max(search, key=lambda s: (s["cv_map"], -s["c"]))
        thresholds = tune_thresholds(oof[best["c"]], y)
        head = fit_head(data, y, replace(config, c=best["c"]))
    return MultiLabelFit(head, best["c"], thresholds, search, len(folds))


def fit_head(data: Dataset, y_rec: np.ndarray, config: ProbeConfig) -> ProbeHead:
    """One binary regression per label on the windows (each window carries its recording's labels)."""
    n_labels = y_rec.shape[1]
    head = ProbeHead(data.x.shape[1], data.x.shape[2], n_labels, config)
    head.set_normalisation(data.x)
    with torch.no_grad():
        features = head.pool_layers(data.x).double().numpy()
    y_win = y_rec[data.recording]
    weight, bias = np.zeros((n_labels, features.shape[1])), np.zeros(n_labels)
    for k in range(n_labels):
        target = y_win[:, k]
        if target.min() == target.max():  # always or never present in these windows: a constant answer
            bias[k] = -ABSENT_CLASS_BIAS if target[0] else ABSENT_CLASS_BIAS
            continue
        model = LogisticRegression(C=config.c, max_iter=MAX_ITER, tol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features, target)
        weight[k], bias[k] = model.coef_[0], model.intercept_[0]
    linear = head.classifier[-1]  # type: ignore[index]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return head.eval()


def tune_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per label, the probability threshold with the best F1 on held-out recordings."""
    held = np.isfinite(probs).all(1)
    out = np.full(y.shape[1], DEFAULT_THRESHOLD)
    for k in range(y.shape[1]):
        if y[held, k].sum() == 0:
            continue
        precision, recall, cut = precision_recall_curve(y[held, k], probs[held, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        out[k] = float(cut[int(np.argmax(f1))])
    return out


def _scores(c: float, probs: np.ndarray, y: np.ndarray) -> SearchRow:
    held = np.isfinite(probs).all(1)
    cv_map = mean_average_precision(probs[held], y[held])
    return {"c": c, "config": f"logreg per label C={c:g}", "cv_map": float("nan") if cv_map is None else cv_map}


def _window_logits(head: ProbeHead, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return head(x).double().numpy()
