"""Manifest -> embeddings -> grouped validation split -> small probe search -> saved model folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audioclf.encoders.loader import Encoder, LoadedEncoder, fit_windows, load_encoder, sample_rate_of
from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.errors import TrainingError
from audioclf.evaluation.metrics import compute_report
from audioclf.evaluation.report import write_report
from audioclf.evaluation.report_types import ClassificationReport
from audioclf.evaluation.segments import Segmenter
from audioclf.evaluation.window_logits import WindowLogits
from audioclf.extraction.embed import EmbedResult, embed_items, write_failures
from audioclf.fitting.context import (
    Context,
    plan_context,
    refit_in_context,
    segmenting_in_context,
    with_context,
    with_sound_extent,
)
from audioclf.fitting.data import Dataset, hold_out_test, stack
from audioclf.fitting.defaults import LAYER
from audioclf.fitting.fusion import calibrate, temperature
from audioclf.fitting.probe import EpochStats, FitOptions, FitResult, ProbeHead, predict_logits
from audioclf.fitting.probe_folder import save_probe
from audioclf.fitting.selection import DEFAULT_FOLDS, Candidate, Selection, SelectOptions, refit, select
from audioclf.fitting.summary import TrainSummary
from audioclf.fitting.train_multilabel import MultiLabelJob, MultiLabelRun, train_multilabel
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import AudioCache, Embedded, EmbeddingCache, default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.label_sets import is_multi_label
from audioclf.io.manifest import Item, check_two_labels, labels_of, usable_labels
from audioclf.model.card import Calibration, ModelKind
from audioclf.model.folder import prepare_out_dir
from audioclf.model.fusion import Fusion
from audioclf.model.novelty import Novelty
from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import ProbeConfig, check_layer
from audioclf.model.segmenting import Segmenting
from audioclf.model.training_set import training_rows
from audioclf.speech.features import FeatureMode
from audioclf.speech.text_features import FeatureOptions, TextView, write_transcripts

if TYPE_CHECKING:
    from audioclf.extraction.ray import RayOptions, RayRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    encoder: ModelSpec | None = None  # None: the default pretrained model, falling back to the built-in one
    windows: WindowOptions = field(default_factory=WindowOptions.encoder_native)
    cache_dir: Path = field(default_factory=default_cache_dir)
    folds: int = DEFAULT_FOLDS  # grouped cross-validation folds that choose the probe (split=val rows: one fold)
    layer: str = LAYER  # auto (search), last, weighted, mean, or a layer index
    hidden: int | None = None  # None: search logistic regression, linear and MLP heads; 0: linear ones only
    lr: float | None = None  # given: torch heads at this learning rate only (no logistic regression)
    fit: FitOptions = field(default_factory=FitOptions)
    force: bool = False
    progress: bool = True
    fetch: FetchOptions | None = None  # downloads of URL rows
    test_size: float | None = None  # hold out this many groups (>= 1) or this fraction (< 1) as a test set
    precision: Precision = Precision.AUTO  # of HF encoders' embeddings: auto (bf16 where supported) | bf16 | fp32
    features: FeatureOptions = field(default_factory=FeatureOptions)  # acoustic | transcript | fused
    ray: RayOptions | None = None  # download and embed on Ray first (the probe search stays on this machine)
    context: Context = Context.AUTO  # short clips also trained with background around them (fitting.context)


@dataclass(frozen=True)
class ProbeRun:
    """What a probe's training adds to its summary: the search, the chosen probe, its fit and held-out test."""

    out: Path
    labels: list[str]
    encoder_spec: ModelSpec
    fallback_reason: str | None
    embed: EmbedResult
    n_train: int  # recordings the final probe was fitted on
    n_folds: int  # cross-validation folds that chose it
    search: list[Candidate]  # every candidate's cross-validation scores
    config: ProbeConfig
    fit: FitResult
    seconds: float
    test_report: ClassificationReport | None = None  # with --test-size: the held-out groups' evaluation
    segmenting: Segmenting | None = None  # how its segments are made by default (from the clips, before context)
    context_head: HeadArrays | None = None  # the chosen probe refitted with the clips' context copies
    context_novelty: Novelty | None = None  # its novelty detector (the clips and each copy alone)
    fusion: str | None = None  # --features fused: each view's and the fusion's validation scores
    ray: RayRun | None = None  # with TrainOptions.ray: the Ray embedding run that filled the cache
    features: FeatureMode = FeatureMode.ACOUSTIC  # what the probe read


def calibration(view: ViewFit, fusion: Fusion | None) -> Calibration:
    """Temperature scaling (Guo et al., 2017) of the chosen probe: the temperature that minimises the negative
    log-likelihood of its out-of-fold recording logits, i.e. of recordings each fold model never saw. A fused
    model is calibrated by its own per-view temperatures instead."""
    if fusion is not None:
        return Calibration(1.0, "none: the fusion holds its own per-view temperatures")
    oof, y = view.selection.chosen.oof, view.data.recording_labels()
    held = np.isfinite(oof).all(1)
    if held.sum() < 2:
        return Calibration(1.0, "none: no out-of-fold predictions")
    t = temperature(oof[held], y[held])
    return Calibration(t, f"out-of-fold recording logits of {int(held.sum())} training recordings")


def _test_report(
    head: ProbeHead,
    test: Dataset,
    labels: list[str],
    out: Path,
    fused: tuple[Fusion | None, Dataset | None],
    temperature_: float,
) -> ClassificationReport:
    fusion, text = fused
    logits = predict_logits(head, test.x.numpy()) / temperature_  # 1 for a fused model
    if fusion is not None and text is not None:
        logits = fusion.views(logits, test.recording, text.x.numpy())["fused"]
    preds = WindowLogits(
        labels=labels,
        window_logits=logits,
        window_recording=test.recording,
        window_starts_s=np.zeros(len(test.recording)),
        recordings=[item.source for item in test.items],
        recording_true=np.array([labels.index(item.label or "") for item in test.items]),
        recording_groups=[item.group for item in test.items],
    )
    report = compute_report(preds)
    write_report(report, out / "report", context={"test": "held out with test_size", "model": str(out)})
    return report


@dataclass(frozen=True)
class ViewFit:
    """The probe chosen by cross-validation for one view of the data, refitted on all its training recordings."""

    head: ProbeHead
    selection: Selection
    fit: FitResult
    data: Dataset

    @property
    def config(self) -> ProbeConfig:
        return self.selection.chosen.config


def fit_view(
    data: Dataset, n_classes: int, options: TrainOptions, on_epoch: Callable[[EpochStats], None] | None = None
) -> ViewFit:
    """Grouped k-fold cross-validation of the candidates, then the chosen one refitted on all of ``data``."""
    select_options = SelectOptions(
        options.folds, options.layer, options.hidden, options.lr, options.fit, options.progress
    )
    selection = select(data, n_classes, select_options)
    head, fit = refit(data, n_classes, selection.chosen, options.fit, on_epoch)
    return ViewFit(head, selection, fit, data)


def train(
    manifest: Path, out: Path, options: TrainOptions, on_epoch: Callable[[EpochStats], None] | None = None
) -> TrainSummary:
    """The whole ``audioclf train`` flow of a probe; rows with split=test are never seen. A manifest with a
    multi-label row trains a multi-label probe (``train_multilabel``)."""
    run = _train(manifest, out, options, on_epoch)
    if isinstance(run, MultiLabelRun):
        kind, failures = ModelKind.MULTI_LABEL, run.embed.failures
    else:
        kind = {FeatureMode.TRANSCRIPT: ModelKind.TRANSCRIPT, FeatureMode.FUSED: ModelKind.FUSED}.get(
            run.features, ModelKind.PROBE
        )
        failures = run.embed.failures
    return TrainSummary(
        kind, run.out, run.labels, run.encoder_spec, run.n_train, failures, run.seconds, run, run.fallback_reason
    )


def _train(
    manifest: Path, out: Path, options: TrainOptions, on_epoch: Callable[[EpochStats], None] | None
) -> ProbeRun | MultiLabelRun:
    started = time.perf_counter()
    items = training_rows(manifest)
    labels = labels_of(items)
    if not items:
        raise TrainingError(f"{manifest}: no training rows (every row has split=test)")
    check_two_labels(labels, manifest)
    multi = is_multi_label(item.label for item in items)
    if multi and options.features.mode is not FeatureMode.ACOUSTIC:
        raise TrainingError(
            f"{manifest}: multi-label rows train acoustic probes only; use acoustic features", option="features"
        )
    prepare_out_dir(out, force=options.force)
    loaded = load_encoder(options.encoder, options.precision)
    encoder = loaded.encoder
    if options.features.mode is not FeatureMode.TRANSCRIPT:  # the acoustic probe reads the encoder's layers
        check_layer(options.layer, encoder.n_layers, encoder.spec)
    options = replace(options, windows=fit_windows(options.windows, encoder))
    view = _text_view(options, encoder)  # before embedding: a CTC encoder transcribes in the same pass
    embedded, ray_run = _embed(items, encoder, view, options)
    embedded, segmenting = _in_context(embedded, encoder, None if multi else view, options, multi)
    if embedded.failures:
        write_failures(embedded.failures, out / "failures.csv")
    if not embedded.embedded:
        first = embedded.failures[0]
        raise TrainingError(f"no file could be decoded; first: {first.item.where}: {first.reason}")
    labels = usable_labels([item for item, _ in embedded.embedded], labels, manifest)
    if multi:
        return train_multilabel(_multilabel_job(manifest, out, labels, loaded, options), embedded, started)
    pairs, text_pairs = _feature_pairs(view, embedded.embedded, out)
    data, test_set = hold_out_test(stack(pairs, labels), options.test_size, options.fit.seed, out)
    main = fit_view(data.clean(), len(labels), options, on_epoch)  # the recordings as they are
    context_head, context_novelty = refit_in_context(data, main.selection.chosen, len(labels), options.fit)
    fusion, text_test, fusion_note = _late_fusion(main, text_pairs, labels, options)
    head, cal = main.head, calibration(main, fusion)
    tested = None
    if test_set is not None:
        tested = _test_report(head, test_set, labels, out, (fusion, text_test), cal.temperature)
    summary = ProbeRun(
        out=out,
        labels=labels,
        encoder_spec=encoder.spec,
        fallback_reason=loaded.fallback_reason,
        embed=embedded,
        n_train=len(main.data.items),
        n_folds=main.selection.n_folds,
        search=main.selection.candidates,
        config=main.config,
        fit=main.fit,
        seconds=time.perf_counter() - started,
        test_report=tested,
        fusion=fusion_note,
        ray=ray_run,
        features=options.features.mode,
        segmenting=segmenting_in_context(segmenting, context_head, context_novelty),
        context_head=context_head,
        context_novelty=context_novelty,
    )
    save_probe(manifest, out, summary, (main, fusion, cal), (encoder, view), options)
    return replace(summary, seconds=time.perf_counter() - started)  # the novelty fit and the saving count too


def _multilabel_job(
    manifest: Path, out: Path, labels: list[str], loaded: LoadedEncoder, options: TrainOptions
) -> MultiLabelJob:
    return MultiLabelJob(
        manifest=manifest,
        out=out,
        labels=labels,
        encoder_spec=loaded.encoder.spec,
        encoder_identity=loaded.encoder.identity,
        fallback_reason=loaded.fallback_reason,
        windows=options.windows,
        layer=options.layer,
        folds=options.folds,
        seed=options.fit.seed,
        test_size=options.test_size,
    )


def _in_context(
    embedded: EmbedResult, encoder: Encoder, view: TextView | None, options: TrainOptions, multi: bool
) -> tuple[EmbedResult, Segmenting | None]:
    """The clips' default segmenter (from their durations), and the single-label acoustic probe's context
    copies of short clips (``fitting.context``)."""
    durations = [e.duration_s for _, e in embedded.embedded]
    segmenting = Segmenting.of(durations, options.windows.window_s)
    audio = AudioCache(options.cache_dir, options.windows.max_duration_s, sample_rate_of(encoder))  # as it reads
    if segmenting is not None and segmenting.segmenter is Segmenter.EVENTS:
        segmenting = with_sound_extent(segmenting, embedded, audio)
    plan = plan_context(options.context, segmenting, options.windows.window_s, options.fit.seed)
    if plan is None or view is not None or multi or not embedded.embedded:
        return embedded, segmenting
    return with_context(embedded, encoder, audio, plan), segmenting


def _embed(
    items: list[Item], encoder: Encoder, view: TextView | None, options: TrainOptions
) -> tuple[EmbedResult, RayRun | None]:
    """Embed ``items`` (on Ray first when asked: this pass then reads the cache and skips Ray's failures)."""
    ray_run = None
    if options.ray is not None:
        from audioclf.extraction.ray import embed_on_ray

        features = options.features if view is not None else None  # the workers transcribe too
        ray_run = embed_on_ray(
            items,
            encoder.spec,
            options.precision,
            options.cache_dir,
            options.windows,
            fetch=options.fetch,
            options=options.ray,
            progress=options.progress,
            features=features,
        )
        failed = {f.item.where for f in ray_run.result.failures}
        items = [item for item in items if item.where not in failed]
    cache = EmbeddingCache(options.cache_dir, encoder.identity, options.windows)
    same_pass = view.same_pass_cache if view is not None else None
    embedded = embed_items(
        items, encoder, cache, options.windows, fetch=options.fetch, progress=options.progress, transcripts=same_pass
    )
    if ray_run is not None:
        embedded.failures = ray_run.result.failures + embedded.failures
    log.debug("%s", embedded.summary())
    return embedded, ray_run


def _feature_pairs(
    view: TextView | None, embedded: list[tuple[Item, Embedded]], out: Path
) -> tuple[list[tuple[Item, Embedded]], list[tuple[Item, Embedded]] | None]:
    """(what the main probe sees, the transcript view or None); transcripts are written for people to read."""
    if view is None:
        return embedded, None
    text_pairs, said = view.apply(embedded)
    write_transcripts([item for item, _ in text_pairs], said, out / "transcripts.csv")
    transcript, fused = view.mode is FeatureMode.TRANSCRIPT, view.mode is FeatureMode.FUSED
    return (text_pairs if transcript else embedded), (text_pairs if fused else None)


def _late_fusion(
    main: ViewFit, text_pairs: list[tuple[Item, Embedded]] | None, labels: list[str], options: TrainOptions
) -> tuple[Fusion | None, Dataset | None, str | None]:
    """With --features fused: the transcript view's probe, the calibration, and a line for the summary."""
    if text_pairs is None:
        return None, None, None
    text_data, text_test = hold_out_test(stack(text_pairs, labels), options.test_size, options.fit.seed, None)
    text_fit = fit_view(text_data, len(labels), options)
    fusion, note = calibrate(main.selection.chosen.oof, text_fit.selection.chosen.oof, main.data, text_fit.head)
    return fusion, text_test, note


def _text_view(options: TrainOptions, encoder: Encoder) -> TextView | None:
    if options.features.mode is FeatureMode.ACOUSTIC:
        return None
    return TextView(options.features, encoder, options.cache_dir, options.windows)
