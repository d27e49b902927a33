"""`audioclf train`: the probe or fine-tuning, its epoch lines, search table and summary."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from audioclf.cli.options import EPOCH_HEADER, emit, fetch_options, ray_options, window_options
from audioclf.encoders.loader import DEFAULT_ENCODER
from audioclf.errors import ManifestError, TrainingError
from audioclf.evaluation.report import summary_lines
from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.probe import EpochStats, FitOptions
from audioclf.fitting.train_finetune import finetune
from audioclf.fitting.train_multilabel import MultiLabelSummary
from audioclf.fitting.train_probe import TrainOptions, TrainSummary, train
from audioclf.speech.text_features import FeatureOptions


def _epoch_line(s: EpochStats) -> str:
    return (
        f"{s.epoch:>5} {s.seconds:>8.2f} {s.train_loss:>10.4f} {s.train_acc:>9.3f} "
        f"{s.val_loss:>8.4f} {s.val_acc:>7.3f} {s.val_f1:>6.3f}"
    )


def _epoch_printer(quiet: bool) -> Callable[[EpochStats], None] | None:
    header_shown = False

    def on_epoch(stats: EpochStats) -> None:
        nonlocal header_shown
        if not header_shown:
            emit(EPOCH_HEADER)
            header_shown = True
        emit(_epoch_line(stats))

    return None if quiet else on_epoch


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The probe's TrainOptions from the options that ``train`` and ``crossval`` share."""
    return TrainOptions(
        encoder=args.encoder,
        windows=window_options(args),
        cache_dir=args.cache_dir,
        folds=args.folds,
        layer=args.layer,
        hidden=args.hidden,
        lr=args.lr,
        fit=FitOptions(
            max_epochs=args.epochs or 200,
            patience=args.patience or 20,
            balanced=args.class_weight == "balanced",
            seed=args.seed,
        ),
        force=args.force,
        progress=not args.quiet,
        fetch=fetch_options(args, args.max_duration),
        test_size=args.test_size,
        precision=args.precision,
        features=FeatureOptions(args.features, args.transcriber, args.text_encoder),
        ray=ray_options(args),
    )


# (argument, its default, flag): options of one mode that the other does not use, refused instead of ignored
FINETUNE_ONLY = [
    ("batch_size", 8, "--batch-size"),
    ("accum", 1, "--accum"),
    ("freeze_layers", 0, "--freeze-layers"),
    ("train_feature_encoder", False, "--train-feature-encoder"),
    ("augment", False, "--augment"),
    ("gradient_checkpointing", False, "--gradient-checkpointing"),
    ("resume", False, "--resume"),
    ("stop_after", None, "--stop-after"),
    ("val_fraction", 0.2, "--val-fraction"),
]
PROBE_ONLY = [
    ("layer", "auto", "--layer"),
    ("hidden", None, "--hidden"),
    ("folds", 5, "--folds"),
    ("features", "acoustic", "--features"),
    ("test_size", None, "--test-size"),
]


def refuse_other_mode(args: argparse.Namespace) -> None:
    """One line for a flag the chosen ``--mode`` would ignore."""
    other = PROBE_ONLY if args.mode == "finetune" else FINETUNE_ONLY
    given = [flag for dest, default, flag in other if getattr(args, dest, default) != default]
    if given:
        mode = "fine-tuning" if args.mode == "finetune" else "the probe (--mode probe)"
        raise TrainingError(f"{', '.join(given)}: not used by {mode}; remove {'them' if len(given) > 1 else 'it'}")


def cmd_train(args: argparse.Namespace) -> int:
    refuse_other_mode(args)
    if args.mode == "finetune":
        return _finetune(args)
    s = train(args.manifest, args.out, train_options(args), on_epoch=_epoch_printer(args.quiet))
    if isinstance(s, MultiLabelSummary):
        _multilabel_summary(s)
        return 0
    _search_table(s)
    _overall(s.fit.history, s.fit.best_epoch, s.seconds, s)
    emit(f"encoder          {s.encoder_spec}" + (" (fallback)" if s.fallback_reason else ""))
    see = f" — see {s.out / 'failures.csv'}" if s.embed.failures else ""
    if s.ray is not None:
        hours, workers = s.ray.result.audio_s / 3600, len(s.ray.workers)
        emit(f"ray              {s.ray.result.summary()}; {hours:.2f} h of audio on {workers} worker process(es)")
    emit(f"data             {s.embed.summary()}{see}")
    folds = f"{s.n_folds}-fold grouped cross-validation" if s.n_folds > 1 else "the split=val rows"
    emit(f"split            {s.n_train} training recordings, {len(s.labels)} labels; probe chosen by {folds}")
    emit(f"search           {len(s.search)} configs; best {s.config.describe()}, refit on all training recordings")
    if s.fusion is not None:
        emit(f"fusion           {s.fusion}")
    emit(f"model            {s.out}")
    if s.test_report is not None:
        emit()
        emit(f"held-out test groups (--test-size): rows in {s.out / 'test_split.csv'}, report in {s.out / 'report'}")
        for line in summary_lines(s.test_report):
            emit(line)
    return 0


def _multilabel_summary(s: MultiLabelSummary) -> None:
    emit()
    emit(f"{'candidate (cross-validation)':<34} {'mAP':>6}")
    for c in sorted(s.fit.search, key=lambda c: c["c"] != s.fit.c):
        emit(f"{c['config']:<34} {c['cv_map']:>6.3f}")
    emit()
    emit(f"total time       {s.seconds:.1f} s")
    emit(f"encoder          {s.encoder_spec}" + (" (fallback)" if s.fallback_reason else ""))
    see = f" — see {s.out / 'failures.csv'}" if s.embed.failures else ""
    emit(f"data             {s.embed.summary()}{see}")
    counts = ", ".join(f"{label} {n}" for label, n in s.label_counts.items())
    emit(f"split            {s.n_train} training recordings, multi-label ({counts}); {s.fit.n_folds}-fold grouped CV")
    thresholds = ", ".join(f"{label} {t:.2f}" for label, t in zip(s.labels, s.fit.thresholds, strict=True))
    emit(f"thresholds       {thresholds} (best F1 per label out of fold)")
    emit(f"model            {s.out}")


SEARCH_ROWS = 8  # the best candidates shown; all of them are in audioclf.json


def _search_table(s: TrainSummary) -> None:
    """The best candidates of the cross-validation, best first (mean ± std over folds)."""
    ranked = sorted(s.search, key=lambda c: (c.config == s.config, c.key), reverse=True)  # the chosen one first
    emit()
    emit(f"{'candidate (cross-validation)':<34} {'macro-F1':>15} {'accuracy':>8} {'log-loss':>8} {'epochs':>6}")
    for c in ranked[:SEARCH_ROWS]:
        f1, epochs = f"{c.f1.mean():.3f} ± {c.f1.std():.3f}", c.epochs or "-"
        emit(f"{c.config.describe():<34} {f1:>15} {c.accuracy.mean():>8.3f} {c.log_loss.mean():>8.4f} {epochs:>6}")
    if len(ranked) > SEARCH_ROWS:
        emit(f"... {len(ranked) - SEARCH_ROWS} more in {s.out / 'audioclf.json'}")


def _overall(history: list[EpochStats], best_epoch: int, seconds: float, probe: TrainSummary | None = None) -> None:
    """The per-epoch table's summary (a fine-tuning run, or a probe refitted for its chosen epochs)."""
    emit()
    if history:
        emit(f"epochs           {len(history)} (best {best_epoch}), {sum(h.seconds for h in history):.2f} s")
        emit(f"mean train loss  {sum(h.train_loss for h in history) / len(history):.4f}")
    if probe is not None:
        fit = probe.fit
        emit(f"cross-validation accuracy {fit.best_val_acc:.3f}, macro-F1 {fit.best_f1:.3f} (the chosen probe)")
    else:
        best = history[best_epoch - 1]
        emit(f"best validation  accuracy {best.val_acc:.3f}, macro-F1 {best.val_f1:.3f}")
    emit(f"total time       {seconds:.1f} s")


def _finetune(args: argparse.Namespace) -> int:
    if args.features != "acoustic":
        raise ManifestError("--features transcript/fused is for probe mode; fine-tuning learns from the audio")
    if args.test_size is not None:
        raise ManifestError("--test-size is for probe mode; give fine-tuning a manifest with split=test rows")
    if args.ray is not None:
        raise ManifestError("--ray is for probe mode (it fills the embedding cache); fine-tuning runs on this machine")
    options = FinetuneOptions(
        epochs=args.epochs or 10,
        batch_size=args.batch_size,
        accum=args.accum,
        lr=args.lr or 3e-5,
        freeze_feature_encoder=not args.train_feature_encoder,
        freeze_layers=args.freeze_layers,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        augment=args.augment,
        patience=args.patience or 3,
        balanced=args.class_weight == "balanced",
        val_fraction=args.val_fraction,
        seed=args.seed,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.quiet,
    )
    spec = args.encoder or DEFAULT_ENCODER
    s = finetune(
        args.manifest,
        args.out,
        spec,
        window_options(args),
        args.cache_dir,
        options,
        fetch=fetch_options(args, args.max_duration),
        on_epoch=_epoch_printer(args.quiet),
        force=args.force,
    )
    if not s.main:  # other DDP ranks: rank 0 reports
        return 0
    _overall(s.state.history, s.state.best_epoch, s.seconds)
    emit(f"encoder          {s.encoder_spec} (fine-tuned)")
    emit(f"split            {s.n_train} train / {s.n_val} validation recordings (grouped), {len(s.labels)} labels")
    emit(f"failed           {len(s.failures)}" + (f" — see {s.out / 'failures.csv'}" if s.failures else ""))
    emit(f"model            {s.out} (transformers format; checkpoint in {s.out / 'checkpoint'})")
    return 0
