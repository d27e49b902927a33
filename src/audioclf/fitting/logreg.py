"""A standardised L2 logistic regression (scikit-learn, LBFGS) fitted on cached embeddings, held as a linear head.

The model is the one a practitioner would fit in a notebook: z-score each feature with the training windows'
statistics, then ``LogisticRegression(C=...)``. Its coefficients are copied into a linear ``ProbeHead``
(z-score buffers + one ``nn.Linear``), so it is saved, loaded, exported and applied like every other probe:
no pickle, the same ``predict_logits``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from audioclf.fitting.probe import ProbeHead
from audioclf.model.probe_config import LBFGS, ProbeConfig

MAX_ITER = 1000
ABSENT_CLASS_BIAS = -30.0  # a class missing from a fold's training windows: never predicted, finite log-loss


def logreg_path(
    x: torch.Tensor, y: np.ndarray, n_classes: int, config: ProbeConfig, c_grid: Sequence[float], *, balanced: bool
) -> Iterator[ProbeHead]:
    """One linear head per C (ascending), each warm-started from the previous: a regularisation path.

    ``x`` is [n_windows, n_layers, dim]; ``config.layer`` picks what the regression sees (as ``ProbeHead``
    pools it, after the per-layer z-score)."""
    head = ProbeHead(x.shape[1], x.shape[2], n_classes, replace(config, fitter=LBFGS, hidden=0))
    head.set_normalisation(x)
    with torch.no_grad():
        features = head.pool_layers(x).double().numpy()
    present = np.unique(y)
    if len(present) < 2:  # a fold whose training windows hold one class: the regression can only say that class
        for c in sorted(c_grid):
            yield _constant_head(head, int(present[0]), n_classes, replace(head.config, c=float(c)))
        return
    model = LogisticRegression(
        C=float(c_grid[0]), max_iter=MAX_ITER, tol=1e-5, warm_start=True, class_weight="balanced" if balanced else None
    )
    for c in sorted(c_grid):
        model.C = float(c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the best of MAX_ITER steps is still a fine probe
            model.fit(features, y)
        yield _as_head(head, model, present, n_classes, replace(head.config, c=float(c)))


def _constant_head(template: ProbeHead, label: int, n_classes: int, config: ProbeConfig) -> ProbeHead:
    return _as_head(template, None, np.array([label]), n_classes, config)


def _as_head(
    template: ProbeHead, model: LogisticRegression | None, present: np.ndarray, n_classes: int, config: ProbeConfig
) -> ProbeHead:
    """The fitted regression as a ProbeHead with ``template``'s z-score; absent classes get a very low bias
    (``model`` None: the one ``present`` class, always)."""
    dim = template.mean.shape[1]
    if model is None:
        coef, intercept = np.zeros((1, dim)), np.zeros(1)
    else:
        coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if len(present) == 2:  # scikit-learn keeps one row for two classes: logits (0, z) give the same softmax
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    weight = np.zeros((n_classes, dim))
    bias = np.full(n_classes, ABSENT_CLASS_BIAS)
    weight[present], bias[present] = coef, intercept
    head = ProbeHead(template.mean.shape[0], template.mean.shape[1], n_classes, config)
    head.load_state_dict(template.state_dict())
    linear = head.classifier[-1]  # type: ignore[index]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return head.eval()
