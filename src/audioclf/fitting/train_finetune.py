"""The ``train --mode finetune`` flow: data -> epochs (checkpointed, resumable, early-stopped) -> export.

The model folder is a standard transformers checkpoint (config.json with the labels, model.safetensors,
preprocessor_config.json) plus audioclf.json, so ``transformers.pipeline("audio-classification", model=dir)``
loads it; ``checkpoint/`` beside it holds the latest epoch for ``--resume``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from audioclf.encoders.loader import DEFAULT_ENCODER
from audioclf.encoders.spec import ModelSpec
from audioclf.errors import DecodeError, TrainingError
from audioclf.evaluation.calibration import sigmoid
from audioclf.extraction.embed import Failure, write_failures
from audioclf.fitting.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from audioclf.fitting.data import train_val_indices
from audioclf.fitting.finetune import CHECKPOINT_DIR, FinetuneOptions, Finetuner, FinetuneState, Recording
from audioclf.fitting.fusion import temperature
from audioclf.fitting.multilabel import DEFAULT_THRESHOLD, tune_thresholds
from audioclf.fitting.novelty import fit_confidence
from audioclf.fitting.probe import EpochStats, class_weights
from audioclf.fitting.summary import TrainSummary
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import AudioCache
from audioclf.io.download import FetchOptions, fetch_all
from audioclf.io.label_sets import is_multi_label, multi_hot
from audioclf.io.manifest import Item, check_two_labels, labels_of, usable_labels
from audioclf.model.card import Calibration, EncoderRef, ModelCard, ModelKind, Training
from audioclf.model.folder import CONFIG_NAME, prepare_out_dir, write_card
from audioclf.model.training_set import TrainingSet, training_rows

log = logging.getLogger(__name__)

_NOT_SETTINGS = ("encoder", "windows", "cache_dir", "fetch", "force")  # saved elsewhere in the card, or not at all
_NO_TEMPERATURE = "none: per-label thresholds decide"
_EXPORT_TMP = ".export.tmp"


@dataclass(frozen=True)
class FinetuneRun:
    """What fine-tuning adds to its summary: the validation recordings and the epochs."""

    n_val: int
    state: FinetuneState


def decode_items(
    items: list[Item], cache_dir: Path, windows: WindowOptions, fetch: FetchOptions | None
) -> tuple[list[tuple[Item, np.ndarray]], list[Failure]]:
    """Download URL rows, decode every recording once into the audio cache; bad items are skipped.

    Results keep manifest order (downloads finish in any order), so splits and batches are reproducible."""
    placed = [((row, 0), item) for row, item in enumerate(items) if not item.needs_fetch]
    failures: list[Failure] = []
    remote = [(row, item) for row, item in enumerate(items) if item.needs_fetch]
    if remote:
        for r in fetch_all([item for _, item in remote], fetch or FetchOptions(cache_dir=cache_dir)):
            if r.error is not None:
                failures.append(Failure(r.item, r.error))
            else:
                placed.append(((remote[r.row][0], r.entry), r.item))
    audio_cache = AudioCache(cache_dir, windows.max_duration_s)
    decoded = []
    for _, item in sorted(placed, key=lambda p: p[0]):
        try:
            decoded.append((item, audio_cache.load(item)))
        except (DecodeError, OSError) as exc:
            failures.append(Failure(item, str(exc)))
    for failure in failures:
        log.warning("skipped %s: %s", failure.item.where, failure.reason)
    return decoded, failures


def finetune(
    manifest: Path, out: Path, options: FinetuneOptions, on_epoch: Callable[[EpochStats], None] | None = None
) -> TrainSummary:
    """Fine-tune ``options.encoder`` on the manifest's non-test rows; with ``options.resume``, continue ``out``'s
    run."""
    started = time.perf_counter()
    spec, windows = options.encoder or DEFAULT_ENCODER, options.windows
    items = training_rows(manifest)
    labels = labels_of(items)
    check_two_labels(labels, manifest)
    if not options.resume:
        prepare_out_dir(out, force=options.force)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    decoded, failures = decode_items(items, options.cache_dir, windows, options.fetch)
    if not decoded:
        first = failures[0]
        raise TrainingError(f"no file could be decoded; first: {first.item.where}: {first.reason}")
    labels = usable_labels([item for item, _ in decoded], labels, manifest)
    multi = is_multi_label(item.label for item, _ in decoded)
    recordings = _recordings(decoded, labels, multi)
    keep, held = train_val_indices([r.item for r in recordings], options.val_fraction, options.seed)
    train, val = [recordings[i] for i in keep], [recordings[i] for i in held]
    tuner = Finetuner(spec, labels, windows, options, len(train), multi_label=multi)
    windows = tuner.windows  # the model's fixed input length, when it has one and none was chosen
    if options.balanced and multi:
        log.warning("class weights are for single-label models; the multi-label loss weighs every label alike")
    elif options.balanced:
        tuner.weight = class_weights(np.array([r.label for r in train]), len(labels)).to(tuner.acc.device)
    state = _resume(tuner, out) if options.resume else FinetuneState()
    main = tuner.acc.is_main_process
    if main and failures:
        write_failures(failures, out / "failures.csv")
    if main:  # validation recordings choose the epoch and the temperature: seen too
        TrainingSet.of(r.item for r in recordings).save(out)
    card = _finetune_card(manifest, spec, labels, windows, options, (len(train), len(val), len(failures)))
    for epoch in range(state.epoch + 1, options.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = tuner.train_epoch(train, epoch)
        val_loss, val_acc, val_f1 = tuner.validate(val)
        stats = EpochStats(epoch, time.perf_counter() - t0, train_loss, train_acc, val_loss, val_acc, val_f1)
        state.history.append(stats)
        state.epoch = epoch
        if main and on_epoch is not None:
            on_epoch(stats)
        if (val_f1, -val_loss) > (state.best_f1, -state.best_loss):
            state.best_epoch, state.best_f1, state.best_loss = epoch, val_f1, val_loss
            if main:
                metrics = {"val_accuracy": val_acc, "val_macro_f1": val_f1, "val_loss": val_loss, "best_epoch": epoch}
                _export(tuner, out, replace(card, metrics=metrics))
        if main:
            _checkpoint(tuner, out, state)
        tuner.acc.wait_for_everyone()
        if epoch - state.best_epoch >= options.patience or epoch == options.stop_after:
            break
    seconds = time.perf_counter() - started
    run = FinetuneRun(len(val), state)
    return TrainSummary(ModelKind.FINETUNED, out, labels, spec, len(train), failures, seconds, run, main=main)


def _recordings(decoded: list[tuple[Item, np.ndarray]], labels: list[str], multi: bool) -> list[Recording]:
    if multi:
        targets = multi_hot([item.label for item, _ in decoded], labels)
        return [Recording(item, audio, 0, targets[i]) for i, (item, audio) in enumerate(decoded)]
    index = {label: i for i, label in enumerate(labels)}
    return [Recording(item, audio, index[item.label or ""]) for item, audio in decoded]


def _finetune_card(
    manifest: Path,
    spec: ModelSpec,
    labels: list[str],
    windows: WindowOptions,
    options: FinetuneOptions,
    counts: tuple[int, int, int],
) -> ModelCard:
    n_train, n_val, n_failed = counts
    settings = {k: v for k, v in asdict(options).items() if k not in _NOT_SETTINGS}
    details = {"n_val_recordings": n_val, "options": settings}
    return ModelCard(
        kind=ModelKind.FINETUNED,
        labels=tuple(labels),
        encoder=EncoderRef(spec, ""),
        windows=windows,
        training=Training(str(manifest), n_train, n_failed, details),
    )


def _export(tuner: Finetuner, out: Path, card: ModelCard) -> None:
    """Write the whole export into a temp folder, then move it in with audioclf.json last. The temperature fitted
    on this epoch's validation recordings is folded into the exported classifier (not the one training goes on
    with), so ``pipeline`` and ``predict`` give the same calibrated probabilities."""
    tmp = out / _EXPORT_TMP
    shutil.rmtree(tmp, ignore_errors=True)
    model = tuner.acc.unwrap_model(tuner.model)
    model.save_pretrained(tmp, safe_serialization=True)
    if tuner.multi_label:  # per-label thresholds on the validation recordings decide, not a softmax temperature
        card = replace(card, thresholds=_thresholds(tuner), calibration=Calibration(1.0, _NO_TEMPERATURE, folded=1.0))
    else:
        card = replace(card, calibration=fold_temperature(model, tmp, tuner.last_validation))
    if tuner.last_validation is not None and not tuner.multi_label:  # the folded temperature divides the logits
        n = len(tuner.last_validation[1])
        folded = card.calibration.folded if card.calibration is not None else None
        abstain = fit_confidence(*tuner.last_validation, folded or 1.0, f"{n} validation recordings at the best epoch")
        card = replace(card, abstain=abstain)
    tuner.extractor.save_pretrained(tmp)
    write_card(tmp, card)
    finish_export(out)


def _thresholds(tuner: Finetuner) -> tuple[float, ...]:
    """Multi-label: each label's F1-best threshold on the best epoch's validation recordings."""
    if tuner.last_validation is None:
        thresholds = np.full(len(tuner.labels), DEFAULT_THRESHOLD)
    else:
        logits, truth = tuner.last_validation
        thresholds = tune_thresholds(sigmoid(logits), truth)
    return tuple(float(t) for t in thresholds)


def fold_temperature(model: Any, folder: Path, validation: tuple[np.ndarray, np.ndarray] | None) -> Calibration:
    """Temperature scaling (Guo et al., 2017) of a fine-tuned model on its validation recordings, written into the
    saved weights of its last linear layer (the one with a logit per label): logits / T = (W / T) h + b / T."""
    weights = folder / "model.safetensors"
    if validation is None or len(validation[1]) < 2 or not weights.is_file():
        return Calibration(1.0, "none: too few validation recordings or a sharded save", folded=1.0)
    t = temperature(*validation)
    n_labels = int(model.config.num_labels)
    last = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_labels][-1]
    tensors = load_file(str(weights))
    keys = [k for k in (f"{last}.weight", f"{last}.bias") if k in tensors]
    if f"{last}.weight" not in keys:  # saved under other names: leave the weights as they are, and say so
        return Calibration(1.0, f"none: {last}.weight is not in the saved weights", folded=1.0)
    for key in keys:
        tensors[key] = (tensors[key].float() / t).to(tensors[key].dtype)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    n = len(validation[1])
    return Calibration(1.0, f"{n} validation recordings at the best epoch", folded=t, into=last)


def finish_export(out: Path) -> None:
    """Move a complete ``.export.tmp`` into place (also after a crash between the two steps)."""
    tmp = out / _EXPORT_TMP
    if not (tmp / CONFIG_NAME).is_file():
        return
    (out / CONFIG_NAME).unlink(missing_ok=True)  # the folder is not a valid model until the end
    for file in sorted(tmp.iterdir(), key=lambda f: f.name == CONFIG_NAME):
        os.replace(file, out / file.name)
    tmp.rmdir()


def _checkpoint(tuner: Finetuner, out: Path, state: FinetuneState) -> None:
    plain: CheckpointState = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_f1": state.best_f1,
        "best_loss": state.best_loss,
        "history": [asdict(h) for h in state.history],
    }
    save_checkpoint(
        out / CHECKPOINT_DIR,
        model=tuner.acc.unwrap_model(tuner.model),
        optimizer=tuner.optimizer,
        scheduler=tuner.scheduler,
        state=plain,
    )


def _resume(tuner: Finetuner, out: Path) -> FinetuneState:
    finish_export(out)
    plain, weights, optimizer, scheduler = load_checkpoint(out / CHECKPOINT_DIR)
    tuner.acc.unwrap_model(tuner.model).load_state_dict(weights)
    tuner.optimizer.load_state_dict(optimizer)
    tuner.scheduler.load_state_dict(scheduler)
    history = [EpochStats.from_dict(h) for h in plain["history"]]
    log.info("resuming after epoch %d (best %d)", plain["epoch"], plain["best_epoch"])
    return FinetuneState(plain["epoch"], plain["best_epoch"], plain["best_f1"], plain["best_loss"], history)
