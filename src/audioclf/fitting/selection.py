"""Choosing the probe by grouped k-fold cross-validation on the training recordings, then refitting it on all.

Every candidate (standardised logistic regressions over a C grid, torch linear and MLP heads, and for
multi-layer encoders the layer they read) is scored on every fold: recording-level macro-F1, accuracy and
log-loss on the fold's held-out groups. The best mean macro-F1 wins (lower mean log-loss breaks ties). Torch
heads of one candidate are trained on all folds in lockstep, so the epoch count is chosen on the mean
validation curve, not by early stopping on one small split. The chosen candidate is then fitted on every
training recording (for the chosen number of epochs). Its out-of-fold logits are kept for the late fusion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from audioclf.evaluation.pooling import recording_mean
from audioclf.fileio import JSONObject
from audioclf.fitting.data import Dataset, cv_folds
from audioclf.fitting.defaults import FOLDS
from audioclf.fitting.logreg import logreg_path
from audioclf.fitting.probe import (
    EpochStats,
    FitOptions,
    FitResult,
    ProbeHead,
    ProbeTrainer,
)
from audioclf.model.probe_config import ADAMW, LAST, LBFGS, MEAN, WEIGHTED, ProbeConfig

log = logging.getLogger(__name__)

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
C_GRID_LARGE = (0.001, 0.01, 0.1, 1.0)
TORCH_HIDDEN = (0, 512)
TORCH_LR = (1e-3, 3e-3)
LARGE_SET = 1_000_000  # training windows x dims above which the grids shrink (the search stays ~30 s)
LARGE_SET_PATIENCE = 10  # epochs without a better mean validation curve, on large sets
DEFAULT_FOLDS = FOLDS
MIN_LOG_LOSS_GAIN = 1e-3  # an epoch that only lowers the mean log-loss by less than this is no better


@dataclass(frozen=True)
class SelectOptions:
    folds: int = DEFAULT_FOLDS
    layer: str = "auto"  # auto (search), last, weighted, mean, or a layer index
    hidden: int | None = None  # None: logistic regression, linear and MLP heads; 0: linear ones only
    lr: float | None = None  # given: torch heads at this learning rate only
    fit: FitOptions = field(default_factory=FitOptions)
    progress: bool = True


@dataclass(frozen=True)
class FoldData:
    train: Dataset
    val: Dataset
    val_rows: np.ndarray  # the validation recordings' indices in the whole training data
    val_true: np.ndarray  # their class ids


@dataclass
class Candidate:
    """One configuration's cross-validation: per-fold scores, out-of-fold logits, chosen epoch count."""

    config: ProbeConfig
    f1: np.ndarray  # [folds] recording-level macro-F1
    accuracy: np.ndarray
    log_loss: np.ndarray
    oof: np.ndarray  # [n_recordings, n_classes] out-of-fold recording logits (NaN where never held out)
    epochs: int = 0  # torch heads: the epoch with the best mean curve; 0 for logistic regression
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # mean (log-loss, acc, F1) per epoch
    fold_heads: list[ProbeHead] = field(default_factory=list)  # one per fold, at the chosen epoch

    @property
    def key(self) -> tuple[float, float]:
        return float(self.f1.mean()), -float(self.log_loss.mean())

    def as_dict(self) -> JSONObject:
        return {
            "config": self.config.describe(),
            "cv_macro_f1": float(self.f1.mean()),
            "cv_macro_f1_std": float(self.f1.std()),
            "cv_accuracy": float(self.accuracy.mean()),
            "cv_log_loss": float(self.log_loss.mean()),
            "epochs": self.epochs,
        }


@dataclass(frozen=True)
class Selection:
    chosen: Candidate
    candidates: list[Candidate]
    n_folds: int


def layer_choices(n_layers: int, layer: str) -> tuple[list[str], list[str]]:
    """(layers the logistic regressions read, layers the torch heads read)."""
    if n_layers == 1:
        return [LAST], [LAST]
    if layer != "auto":
        return ([layer] if layer != WEIGHTED else [MEAN]), [layer]
    singles = sorted({str(round(n_layers * f)) for f in (1 / 3, 1 / 2, 2 / 3)} - {str(n_layers - 1)}, key=int)
    return [LAST, MEAN, *singles], [LAST, WEIGHTED]


def is_large(data: Dataset) -> bool:
    return data.x.shape[0] * data.x.shape[2] > LARGE_SET


def candidate_grid(data: Dataset, options: SelectOptions) -> tuple[list[ProbeConfig], list[ProbeConfig], list[float]]:
    """(torch configs, logistic-regression templates, C grid); smaller grids for large sets."""
    large = is_large(data)
    lr_layers, torch_layers = layer_choices(data.x.shape[1], options.layer)
    hidden = TORCH_HIDDEN if options.hidden is None else (options.hidden,)
    lrs = (TORCH_LR[-1:] if large else TORCH_LR) if options.lr is None else (options.lr,)
    torch_configs = [ProbeConfig(hidden=h, lr=lr, layer=layer) for layer in torch_layers for h in hidden for lr in lrs]
    use_logreg = options.lr is None and not options.hidden
    logreg = [ProbeConfig(layer=layer, fitter=LBFGS) for layer in lr_layers] if use_logreg else []
    return torch_configs, logreg, list(C_GRID_LARGE if large else C_GRID)


def make_folds(data: Dataset, n_folds: int, seed: int) -> list[FoldData]:
    folds = []
    for keep, held in cv_folds(data.items, n_folds, seed):
        val = data.subset(held)
        folds.append(FoldData(data.subset(keep), val, held, val.recording_labels()))
    return folds


@contextmanager
def one_thread() -> Iterator[None]:
    """Probe heads are small: a step is ~1 ms of work, and a second thread's hand-offs made it 10x slower on
    the 2-core machine this was measured on (8 vs 127 ms per MLP step, 0.3 vs 3.6 s for a logistic path)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def select(data: Dataset, n_classes: int, options: SelectOptions) -> Selection:
    """Cross-validate every candidate on grouped folds of ``data``; the best mean macro-F1 is chosen."""
    with one_thread():
        return _select(data, n_classes, options)


def _select(data: Dataset, n_classes: int, options: SelectOptions) -> Selection:
    folds = make_folds(data, options.folds, options.fit.seed)
    torch_configs, logreg, c_grid = candidate_grid(data, options)
    started = time.perf_counter()
    fit = options.fit
    if is_large(data):
        fit = replace(fit, patience=min(fit.patience, LARGE_SET_PATIENCE))
    results: list[Candidate] = []
    steps = [("logreg", c) for c in logreg] + [("torch", c) for c in torch_configs]
    for kind, config in tqdm(steps, desc="cross-validation", unit="config", disable=not options.progress, leave=False):
        if kind == "logreg":
            results += _cv_logreg(folds, len(data.items), n_classes, config, c_grid, options.fit.balanced)
        else:
            results.append(_cv_torch(folds, len(data.items), n_classes, config, fit))
    chosen = _choose(results, data.recording_labels())
    for c in results:
        log.debug("%s: cv macro-F1 %.3f ± %.3f", c.config.describe(), c.f1.mean(), c.f1.std())
    seconds = time.perf_counter() - started
    log.info("cross-validation: %d candidates on %d folds in %.1f s", len(results), len(folds), seconds)
    for c in results:  # only the chosen candidate's fold models are kept (the ensemble measure in bench/)
        if c is not chosen:
            c.fold_heads = []
    return Selection(chosen, results, len(folds))


def _choose(results: list[Candidate], true: np.ndarray) -> Candidate:
    """The best logistic regression, unless a torch head is clearly more accurate out of fold. A torch head's
    score is the best epoch of a noisy curve, so it is biased upwards; the test keeps noise from replacing the
    convex, well-regularised model (without it, FSDD chose heads 0.002 better in cross-validation and 0.04 worse
    on the unseen speaker)."""
    best = max(results, key=lambda c: c.key)
    logregs = [c for c in results if c.config.fitter == LBFGS]
    if not logregs or best.config.fitter == LBFGS:
        return best
    base = max(logregs, key=lambda c: c.key)
    held = np.isfinite(base.oof).all(1) & np.isfinite(best.oof).all(1)
    return best if clearly_better(best.oof[held].argmax(1), base.oof[held].argmax(1), true[held]) else base


def clearly_better(pred: np.ndarray, base: np.ndarray, true: np.ndarray) -> bool:
    """Paired (McNemar-style) test: ``pred`` fixes more recordings that ``base`` gets wrong than it breaks, by
    more than twice the noise of those disagreements (b - c > 2 sqrt(b + c)). Two sigma, not one: ``pred`` is
    the best of several candidates (torch heads, mixture weights), and the best of several noisy scores beats a
    one-sigma bar far more often than one score would."""
    fixed = int(((pred == true) & (base != true)).sum())
    broken = int(((pred != true) & (base == true)).sum())
    return fixed - broken > 2 * np.sqrt(fixed + broken)


def recording_scores(rec_logits: torch.Tensor, true: np.ndarray) -> tuple[float, float, float]:
    """(log-loss, accuracy, macro-F1) of recording logits (or log-probabilities)."""
    log_p = torch.log_softmax(rec_logits.double(), dim=1).numpy()
    pred = log_p.argmax(1)
    nll = float(-log_p[np.arange(len(true)), true].mean())
    return nll, float((pred == true).mean()), float(f1_score(true, pred, average="macro", zero_division=0))


@torch.no_grad()
def _val_logits(head: ProbeHead, fold: FoldData) -> torch.Tensor:
    head.eval()
    return torch.from_numpy(recording_mean(head(fold.val.x).numpy(), fold.val.recording))


def _candidate(
    config: ProbeConfig, per_fold: list[tuple[float, float, float]], oof: np.ndarray, **kw: Any
) -> Candidate:
    nll, acc, f1 = (np.array(v) for v in zip(*per_fold, strict=True))
    return Candidate(config, f1, acc, nll, oof, **kw)


def _cv_logreg(
    folds: list[FoldData], n_rec: int, n_classes: int, config: ProbeConfig, c_grid: list[float], balanced: bool
) -> list[Candidate]:
    """One regularisation path per fold; a candidate per C."""
    per_c: dict[float, list[tuple[float, float, float]]] = {c: [] for c in c_grid}
    oof = {c: np.full((n_rec, n_classes), np.nan) for c in c_grid}
    heads: dict[float, list[ProbeHead]] = {c: [] for c in c_grid}
    for fold in folds:
        for head in logreg_path(fold.train.x, fold.train.y, n_classes, config, c_grid, balanced=balanced):
            logits = _val_logits(head, fold)
            per_c[head.config.c].append(recording_scores(logits, fold.val_true))
            oof[head.config.c][fold.val_rows] = logits.numpy()
            heads[head.config.c].append(head)
    return [_candidate(heads[c][0].config, per_c[c], oof[c], fold_heads=heads[c]) for c in sorted(c_grid)]


def _cv_torch(folds: list[FoldData], n_rec: int, n_classes: int, config: ProbeConfig, fit: FitOptions) -> Candidate:
    """k heads trained in lockstep; stop when the mean validation score has not improved for ``patience``."""
    torch.manual_seed(fit.seed)
    trainers = []
    for fold in folds:
        head = ProbeHead(fold.train.x.shape[1], fold.train.x.shape[2], n_classes, config)
        head.set_normalisation(fold.train.x)
        trainers.append(ProbeTrainer(head, (fold.train.x, fold.train.y), fit))
    curve: list[tuple[float, float, float]] = []
    best: tuple[tuple[float, float], int, list[tuple[float, float, float]], list[dict[str, torch.Tensor]]] | None = None
    for epoch in range(1, fit.max_epochs + 1):
        for trainer in trainers:
            trainer.epoch()
        per_fold = [recording_scores(_val_logits(t.head, f), f.val_true) for t, f in zip(trainers, folds, strict=True)]
        nll, acc, f1 = (float(np.mean(v)) for v in zip(*per_fold, strict=True))
        curve.append((nll, acc, f1))
        if best is None or f1 > best[0][0] or (f1 == best[0][0] and nll < -best[0][1] - MIN_LOG_LOSS_GAIN):
            states = [{k: v.detach().clone() for k, v in t.head.state_dict().items()} for t in trainers]
            best = ((f1, -nll), epoch, per_fold, states)
        elif epoch - best[1] >= fit.patience:
            break
    assert best is not None
    oof = np.full((n_rec, n_classes), np.nan)
    for trainer, fold, state in zip(trainers, folds, best[3], strict=True):
        trainer.head.load_state_dict(state)
        oof[fold.val_rows] = _val_logits(trainer.head, fold).numpy()
    heads = [t.head for t in trainers]
    return _candidate(config, best[2], oof, epochs=best[1], curve=curve, fold_heads=heads)


def refit(
    data: Dataset,
    n_classes: int,
    chosen: Candidate,
    fit: FitOptions,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[ProbeHead, FitResult]:
    """The chosen configuration fitted on every training recording (torch heads: for the chosen epochs, each
    epoch's line showing the training loss and the cross-validation curve at that epoch)."""
    with one_thread():
        return _refit(data, n_classes, chosen, fit, on_epoch)


def _refit(
    data: Dataset,
    n_classes: int,
    chosen: Candidate,
    fit: FitOptions,
    on_epoch: Callable[[EpochStats], None] | None,
) -> tuple[ProbeHead, FitResult]:
    config = chosen.config
    cv = (float(chosen.f1.mean()), float(chosen.accuracy.mean()))
    if config.fitter == LBFGS:
        (head,) = logreg_path(data.x, data.y, n_classes, config, [config.c], balanced=fit.balanced)
        return head, FitResult(head.state_dict(), 0, cv[0], cv[1], [])
    assert config.fitter == ADAMW
    torch.manual_seed(fit.seed)
    head = ProbeHead(data.x.shape[1], data.x.shape[2], n_classes, config)
    head.set_normalisation(data.x)
    trainer = ProbeTrainer(head, (data.x, data.y), fit)
    history = []
    for epoch in range(1, chosen.epochs + 1):
        started = time.perf_counter()
        loss, acc = trainer.epoch()
        nll, cv_acc, cv_f1 = chosen.curve[epoch - 1]
        history.append(EpochStats(epoch, time.perf_counter() - started, loss, acc, nll, cv_acc, cv_f1))
        if on_epoch is not None:
            on_epoch(history[-1])
    head.eval()
    return head, FitResult(head.state_dict(), chosen.epochs, cv[0], cv[1], history)
