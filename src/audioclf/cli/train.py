"""`audioclf train`: the probe or fine-tuning, its epoch lines, search table and summary."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from audioclf.cli.options import EPOCH_HEADER, emit, fetch_options, ray_options, window_options
from audioclf.encoders.spec import TEXT_ENCODERS, TRANSCRIBERS, ModelSpec, Precision, parse_spec
from audioclf.errors import TrainingError
from audioclf.evaluation.report import summary_lines
from audioclf.fitting import defaults as D
from audioclf.fitting.context import Context
from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.probe import EpochStats, FitOptions
from audioclf.fitting.summary import TrainSummary
from audioclf.fitting.train import Options, train
from audioclf.fitting.train_finetune import FinetuneRun
from audioclf.fitting.train_multilabel import MultiLabelRun
from audioclf.fitting.train_probe import ProbeRun, TrainOptions
from audioclf.fitting.zero_shot import ZeroShotOptions, ZeroShotRun
from audioclf.speech.features import FeatureMode, feature_mode
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


def _given(**options: object) -> dict[str, object]:
    """The options a user gave (None: not given, so the option type's own default applies)."""
    return {name: value for name, value in options.items() if value is not None}


def _encoder(args: argparse.Namespace) -> ModelSpec | None:
    return None if args.encoder is None else parse_spec(args.encoder)


def _feature_options(args: argparse.Namespace, mode: FeatureMode) -> FeatureOptions:
    """What reads transcripts (``--transcriber``, ``--text-encoder``), for features of ``mode``."""
    transcriber = None if args.transcriber is None else parse_spec(args.transcriber, TRANSCRIBERS, "transcriber")
    return FeatureOptions(mode, transcriber, parse_spec(args.text_encoder, TEXT_ENCODERS, "text encoder"))


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The probe's TrainOptions from the options that ``train`` and ``crossval`` share."""
    fit = FitOptions(
        **_given(max_epochs=args.epochs, patience=args.patience),  # type: ignore[arg-type]
        balanced=args.class_weight == "balanced",
        seed=args.seed,
    )
    features = _feature_options(args, feature_mode(args.features or D.FEATURES))
    return TrainOptions(
        encoder=_encoder(args),
        windows=window_options(args),
        cache_dir=args.cache_dir,
        **_given(folds=args.folds, layer=args.layer),  # type: ignore[arg-type]
        hidden=args.hidden,
        lr=args.lr,
        fit=fit,
        force=args.force,
        progress=not args.quiet,
        fetch=fetch_options(args, args.max_duration),
        test_size=args.test_size,
        precision=Precision(args.precision),
        features=features,
        ray=ray_options(args),
        context=Context(args.context),
    )


# flags whose default is FinetuneOptions' own (left out when not given)
FINETUNE_FLAGS = ("epochs", "batch_size", "accum", "lr", "freeze_layers", "patience", "val_fraction")


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    given = _given(**{name: getattr(args, name) for name in FINETUNE_FLAGS})
    return FinetuneOptions(
        encoder=_encoder(args),
        windows=window_options(args),
        cache_dir=args.cache_dir,
        fetch=fetch_options(args, args.max_duration),
        force=args.force,
        **given,  # type: ignore[arg-type]
        freeze_feature_encoder=not args.train_feature_encoder,
        precision=Precision(args.precision),
        gradient_checkpointing=args.gradient_checkpointing,
        augment=args.augment,
        balanced=args.class_weight == "balanced",
        seed=args.seed,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.quiet,
    )


# (argument, flag): options of one mode that the other does not use, refused instead of ignored (given: set)
FINETUNE_ONLY = [
    ("batch_size", "--batch-size"),
    ("accum", "--accum"),
    ("freeze_layers", "--freeze-layers"),
    ("train_feature_encoder", "--train-feature-encoder"),
    ("augment", "--augment"),
    ("gradient_checkpointing", "--gradient-checkpointing"),
    ("resume", "--resume"),
    ("stop_after", "--stop-after"),
    ("val_fraction", "--val-fraction"),
]
PROBE_ONLY = [
    ("layer", "--layer"),
    ("hidden", "--hidden"),
    ("folds", "--folds"),
    ("features", "--features"),
    ("test_size", "--test-size"),
    ("ray", "--ray"),
]


def refuse_other_mode(args: argparse.Namespace) -> None:
    """One line for a flag the chosen ``--mode`` would ignore."""
    other = PROBE_ONLY if args.mode == "finetune" else FINETUNE_ONLY
    given = [flag for dest, flag in other if getattr(args, dest, None) not in (None, False)]
    if given:
        mode = "fine-tuning" if args.mode == "finetune" else "the probe (--mode probe)"
        raise TrainingError(f"{', '.join(given)}: not used by {mode}; remove {'them' if len(given) > 1 else 'it'}")


def zero_shot_options(args: argparse.Namespace) -> ZeroShotOptions:
    """A zero-shot model's options; a flag of the probe search or of fine-tuning is refused, not ignored."""
    given = [flag for dest, flag in [*PROBE_ONLY, *FINETUNE_ONLY] if dest != "features" and getattr(args, dest, None)]
    if args.mode == "finetune" or given:
        flags = ", ".join(given or ["--mode finetune"])
        raise TrainingError(f"{flags}: not used by a zero-shot model (--zero-shot); remove it")
    return ZeroShotOptions(
        prompts=args.zero_shot,
        encoder=_encoder(args),
        windows=window_options(args),
        cache_dir=args.cache_dir,
        reads=None if args.features is None else feature_mode(args.features),
        features=_feature_options(args, FeatureMode.TRANSCRIPT),
        precision=Precision(args.precision),
        fetch=fetch_options(args, args.max_duration),
        force=args.force,
        progress=not args.quiet,
    )


def cmd_train(args: argparse.Namespace) -> int:
    if args.zero_shot is not None:
        options: Options = zero_shot_options(args)
    elif args.manifest is None:
        raise TrainingError("give --manifest (labelled rows), or --zero-shot PROMPTS for a model from label names")
    else:
        refuse_other_mode(args)
        options = finetune_options(args) if args.mode == "finetune" else train_options(args)
    s = train(args.manifest, args.out, options, on_epoch=_epoch_printer(args.quiet))
    if s.main:  # other ranks of a distributed fine-tuning: rank 0 reports
        PRINTERS[type(s.run)](s)
    return 0


def _probe_summary(s: TrainSummary) -> None:
    run = s.run
    assert isinstance(run, ProbeRun)
    _search_table(run)
    _overall(run.fit.history, run.fit.best_epoch, s.seconds, run)
    emit(f"encoder          {s.encoder_spec}" + (" (fallback)" if s.fallback_reason else ""))
    see = f" — see {s.out / 'failures.csv'}" if s.failures else ""
    if run.ray is not None:
        hours, workers = run.ray.result.audio_s / 3600, len(run.ray.workers)
        emit(f"ray              {run.ray.result.summary()}; {hours:.2f} h of audio on {workers} worker process(es)")
    emit(f"data             {run.embed.summary()}{see}")
    folds = f"{run.n_folds}-fold grouped cross-validation" if run.n_folds > 1 else "the split=val rows"
    emit(f"split            {s.n_train} training recordings, {len(s.labels)} labels; probe chosen by {folds}")
    emit(f"search           {len(run.search)} configs; best {run.config.describe()}, refit on all training recordings")
    if run.fusion is not None:
        emit(f"fusion           {run.fusion}")
    emit(f"model            {s.out}")
    if run.test_report is not None:
        emit()
        emit(f"held-out test groups (--test-size): rows in {s.out / 'test_split.csv'}, report in {s.out / 'report'}")
        for line in summary_lines(run.test_report):
            emit(line)


def _multilabel_summary(summary: TrainSummary) -> None:
    s = summary.run
    assert isinstance(s, MultiLabelRun)
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


def _search_table(s: ProbeRun) -> None:
    """The best candidates of the cross-validation, best first (mean ± std over folds)."""
    ranked = sorted(s.search, key=lambda c: (c.config == s.config, c.key), reverse=True)  # the chosen one first
    emit()
    emit(f"{'candidate (cross-validation)':<34} {'macro-F1':>15} {'accuracy':>8} {'log-loss':>8} {'epochs':>6}")
    for c in ranked[:SEARCH_ROWS]:
        f1, epochs = f"{c.f1.mean():.3f} ± {c.f1.std():.3f}", c.epochs or "-"
        emit(f"{c.config.describe():<34} {f1:>15} {c.accuracy.mean():>8.3f} {c.log_loss.mean():>8.4f} {epochs:>6}")
    if len(ranked) > SEARCH_ROWS:
        emit(f"... {len(ranked) - SEARCH_ROWS} more in {s.out / 'audioclf.json'}")


def _overall(history: list[EpochStats], best_epoch: int, seconds: float, probe: ProbeRun | None = None) -> None:
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


def _finetune_summary(s: TrainSummary) -> None:
    run = s.run
    assert isinstance(run, FinetuneRun)
    _overall(run.state.history, run.state.best_epoch, s.seconds)
    emit(f"encoder          {s.encoder_spec} (fine-tuned)")
    emit(f"split            {s.n_train} train / {run.n_val} validation recordings (grouped), {len(s.labels)} labels")
    emit(f"failed           {len(s.failures)}" + (f" — see {s.out / 'failures.csv'}" if s.failures else ""))
    emit(f"model            {s.out} (transformers format; checkpoint in {s.out / 'checkpoint'})")


def _zero_shot_summary(s: TrainSummary) -> None:
    run = s.run
    assert isinstance(run, ZeroShotRun)
    emit()
    for label, said in zip(run.labels, run.prompts, strict=True):
        emit(f"{label:<16} {' | '.join(said)}")
    emit()
    emit(f"total time       {s.seconds:.1f} s")
    emit(f"encoder          {s.encoder_spec}" + (" (fallback)" if s.fallback_reason else ""))
    if run.embed is not None:
        see = f" — see {s.out / 'failures.csv'}" if s.failures else ""
        emit(f"data             {run.embed.summary()}{see}")
        emit(f"calibration      temperature {run.calibration.temperature:.3g} on {run.calibration.fitted_on}")
        emit(f"accuracy         {run.accuracy:.3f} on those rows (zero-shot: they chose the temperature only)")
    else:
        emit("calibration      none: no labelled rows (give a manifest to fit the temperature)")
    emit(f"model            {s.out} (zero-shot, {len(s.labels)} labels described in words)")


PRINTERS: dict[type, Callable[[TrainSummary], None]] = {
    ProbeRun: _probe_summary,
    MultiLabelRun: _multilabel_summary,
    FinetuneRun: _finetune_summary,
    ZeroShotRun: _zero_shot_summary,
}
