"""The training flow of a multi-label manifest (a row with ``label`` = ``speech;music``): per-label logistic
probes chosen by grouped cross-validation, per-label thresholds, the model folder and its transformers export."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from audioclf.encoders.spec import ModelSpec
from audioclf.extraction.embed import EmbedResult
from audioclf.fitting.data import hold_out_test, stack
from audioclf.fitting.export import export_probe
from audioclf.fitting.multilabel import MultiLabelFit, fit_multilabel
from audioclf.io.audio import WindowOptions
from audioclf.io.label_sets import multi_hot
from audioclf.model.card import EncoderRef, HeadShape, ModelCard, ModelKind, Training
from audioclf.model.folder import TrainedModel, save_model
from audioclf.model.probe import HeadArrays
from audioclf.model.segmenting import Segmenting
from audioclf.model.training_set import TrainingSet


@dataclass(frozen=True)
class MultiLabelRun:
    out: Path
    labels: list[str]
    encoder_spec: ModelSpec
    fallback_reason: str | None
    embed: EmbedResult
    n_train: int
    fit: MultiLabelFit
    seconds: float
    label_counts: dict[str, int]  # training recordings with each label


@dataclass(frozen=True)
class MultiLabelJob:
    """What the training flow already settled before the probe: where, on what, with which encoder."""

    manifest: Path
    out: Path
    labels: list[str]
    encoder_spec: ModelSpec
    encoder_identity: str
    fallback_reason: str | None
    windows: WindowOptions
    layer: str
    folds: int
    seed: int
    test_size: float | None


def train_multilabel(job: MultiLabelJob, embedded: EmbedResult, started: float) -> MultiLabelRun:
    data, _ = hold_out_test(stack(embedded.embedded, job.labels), job.test_size, job.seed, job.out)
    y = multi_hot([item.label for item in data.items], job.labels)
    fit = fit_multilabel(data, y, n_folds=job.folds, seed=job.seed, layer=job.layer)
    counts = {label: int(n) for label, n in zip(job.labels, y.sum(0), strict=True)}
    summary = MultiLabelRun(
        out=job.out,
        labels=job.labels,
        encoder_spec=job.encoder_spec,
        fallback_reason=job.fallback_reason,
        embed=embedded,
        n_train=len(data.items),
        fit=fit,
        seconds=time.perf_counter() - started,
        label_counts=counts,
    )
    model = TrainedModel(_card(job, summary), HeadArrays.from_head(fit.head))
    TrainingSet.of(data.items).save(job.out)
    save_model(job.out, model)
    export_probe(job.encoder_spec, fit.head, job.labels, job.out, multi_label=True)
    return replace(summary, seconds=time.perf_counter() - started)  # saving and the export count too


def _card(job: MultiLabelJob, s: MultiLabelRun) -> ModelCard:
    fit = s.fit
    details = {
        "cv_folds": fit.n_folds,
        "search": fit.search,
        "label_counts": s.label_counts,
        "final": "refit on all training recordings",
        "fallback_reason": job.fallback_reason,
    }
    return ModelCard(
        kind=ModelKind.MULTI_LABEL,
        labels=tuple(job.labels),
        encoder=EncoderRef(job.encoder_spec, job.encoder_identity),
        windows=job.windows,
        training=Training(str(job.manifest), s.n_train, len(s.embed.failures), details),
        head=HeadShape(int(fit.head.mean.shape[0]), int(fit.head.mean.shape[1]), fit.head.config),
        metrics={"cv_map": float(max(c["cv_map"] for c in fit.search))},
        thresholds=tuple(float(t) for t in fit.thresholds),
        segmenting=Segmenting.of([e.duration_s for _, e in s.embed.embedded], job.windows.window_s),
    )
