"""Manifest -> embeddings -> grouped validation split -> small probe search -> saved model folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import WindowOptions
from .cache import Embedded, EmbeddingCache, default_cache_dir
from .dataset import Dataset, hold_out_test, split_train_val, stack
from .embed import EmbedResult, embed_items, write_failures
from .encoders import Encoder, load_encoder
from .errors import TrainingError
from .evaluate import Predictions, compute_report
from .export import export_probe
from .features import FeatureOptions, TextView, save_tfidf, write_transcripts
from .fusion import Fusion, calibrate
from .heads import (
    LAST,
    WEIGHTED,
    EpochStats,
    FitOptions,
    FitResult,
    ProbeConfig,
    ProbeHead,
    fit_probe,
    predict_logits,
)
from .manifest import Item, labels_of, load_manifest, usable_labels
from .model import TrainedModel, build_meta, fusion_meta, prepare_out_dir, save_model
from .report import write_report
from .sources import FetchOptions

if TYPE_CHECKING:
    from .distributed import RayOptions, RayRun

log = logging.getLogger(__name__)

SEARCH_HIDDEN = (0, 512)
SEARCH_LR = (1e-3, 3e-3)


@dataclass(frozen=True)
class TrainOptions:
    encoder: str | None = None  # None: the default pretrained model, falling back to the built-in one
    windows: WindowOptions = field(default_factory=WindowOptions)
    cache_dir: Path = field(default_factory=default_cache_dir)
    val_fraction: float = 0.2
    layer: str = "auto"  # auto (search last and weighted), last, weighted, or a layer index
    hidden: int | None = None  # None: search SEARCH_HIDDEN
    lr: float | None = None  # None: search SEARCH_LR
    fit: FitOptions = field(default_factory=FitOptions)
    force: bool = False
    progress: bool = True
    fetch: FetchOptions | None = None  # downloads of URL rows
    test_size: float | None = None  # hold out this many groups (>= 1) or this fraction (< 1) as a test set
    precision: str = "auto"  # embedding precision of HF encoders: auto (bf16 where supported) | bf16 | fp32
    features: FeatureOptions = field(default_factory=FeatureOptions)  # acoustic | transcript | fused
    ray: RayOptions | None = None  # download and embed on Ray first (the probe search stays on this machine)


@dataclass(frozen=True)
class TrainSummary:
    out: Path
    labels: list[str]
    encoder_spec: str
    fallback_reason: str | None
    embed: EmbedResult
    n_train: int  # recordings
    n_val: int
    search: list[tuple[str, float]]  # config description, best validation macro-F1
    config: ProbeConfig
    fit: FitResult
    seconds: float
    test_report: dict[str, Any] | None = None  # with --test-size: the held-out groups' evaluation
    fusion: str | None = None  # --features fused: each view's and the fusion's validation scores
    ray: RayRun | None = None  # with TrainOptions.ray: the Ray embedding run that filled the cache


def _test_report(
    head: ProbeHead, test: Dataset, labels: list[str], out: Path, fusion: Fusion | None, text: Dataset | None
) -> dict[str, Any]:
    logits = predict_logits(head, test.x.numpy())
    if fusion is not None and text is not None:
        logits = fusion.views(logits, test.recording, text.x.numpy())["fused"]
    preds = Predictions(
        labels=labels,
        window_logits=logits,
        window_recording=test.recording,
        window_starts_s=np.zeros(len(test.recording)),
        recordings=[item.source for item in test.items],
        recording_true=np.array([labels.index(item.label or "") for item in test.items]),
        recording_groups=[item.group for item in test.items],
    )
    report = compute_report(preds)
    write_report(report, out / "report", context={"test": "held out by --test-size", "model": str(out)})
    return report


def candidate_configs(n_layers: int, options: TrainOptions) -> list[ProbeConfig]:
    if n_layers == 1:
        layers = [LAST]
    elif options.layer == "auto":
        layers = [LAST, WEIGHTED]
    else:
        layers = [options.layer]
    hidden = SEARCH_HIDDEN if options.hidden is None else (options.hidden,)
    lrs = SEARCH_LR if options.lr is None else (options.lr,)
    return [ProbeConfig(hidden=h, lr=lr, layer=layer) for layer in layers for h in hidden for lr in lrs]


def search(
    train: Dataset, val: Dataset, n_classes: int, options: TrainOptions
) -> tuple[ProbeConfig, list[tuple[str, float]]]:
    """Fit every candidate with early stopping; the best recording-level validation macro-F1 wins."""
    configs = candidate_configs(train.x.shape[1], options)
    results: list[tuple[str, float]] = []
    best: tuple[float, float, ProbeConfig] | None = None
    for config in tqdm(configs, desc="search", unit="config", disable=not options.progress, leave=False):
        fit = _fit(train, val, n_classes, config, options.fit)
        results.append((config.describe(), fit.best_f1))
        log.info("%s: validation macro-F1 %.3f at epoch %d", config.describe(), fit.best_f1, fit.best_epoch)
        # Validation F1 often saturates on small sets; the lower validation loss then breaks the tie.
        score = (fit.best_f1, -fit.history[fit.best_epoch - 1].val_loss)
        if best is None or score > best[:2]:
            best = (*score, config)
    assert best is not None
    return best[2], results


@dataclass(frozen=True)
class ViewFit:
    """The probe chosen and trained for one view of the data."""

    head: ProbeHead
    config: ProbeConfig
    results: list[tuple[str, float]]
    fit: FitResult
    train: Dataset
    val: Dataset


def fit_view(
    data: Dataset, n_classes: int, options: TrainOptions, on_epoch: Callable[[EpochStats], None] | None = None
) -> ViewFit:
    """Grouped train/validation split, the probe search, then the chosen probe trained with early stopping."""
    train_set, val_set = split_train_val(data, options.val_fraction, options.fit.seed)
    config, results = search(train_set, val_set, n_classes, options)
    fit = _fit(train_set, val_set, n_classes, config, options.fit, on_epoch)
    head = ProbeHead(data.x.shape[1], data.x.shape[2], n_classes, config)
    head.load_state_dict(fit.state)
    return ViewFit(head, config, results, fit, train_set, val_set)


def _fit(
    train: Dataset,
    val: Dataset,
    n_classes: int,
    config: ProbeConfig,
    options: FitOptions,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    torch.manual_seed(options.seed)
    head = ProbeHead(train.x.shape[1], train.x.shape[2], n_classes, config)
    head.set_normalisation(train.x)
    return fit_probe(head, (train.x, train.y), (val.x, val.y, val.recording), options, on_epoch)


def train(
    manifest: Path, out: Path, options: TrainOptions, on_epoch: Callable[[EpochStats], None] | None = None
) -> TrainSummary:
    """The whole ``audioclf train`` flow; rows with split=test are never seen."""
    started = time.perf_counter()
    items = [item for item in load_manifest(manifest) if item.split != "test"]
    labels = labels_of(items)
    if not items:
        raise TrainingError(f"{manifest}: no training rows (every row has split=test)")
    if len(labels) < 2:
        raise TrainingError(f"{manifest}: found {len(labels)} label(s) {labels}; a classifier needs at least 2")
    prepare_out_dir(out, force=options.force)
    loaded = load_encoder(options.encoder, options.precision)
    encoder = loaded.encoder
    view = _text_view(options, encoder)  # before embedding: a CTC encoder transcribes in the same pass
    embedded, ray_run = _embed(items, encoder, view, options)
    if embedded.failures:
        write_failures(embedded.failures, out / "failures.csv")
    if not embedded.embedded:
        first = embedded.failures[0]
        raise TrainingError(f"no file could be decoded; first: {first.item.where}: {first.reason}")
    labels = usable_labels([item for item, _ in embedded.embedded], labels, manifest)
    pairs, text_pairs = _feature_pairs(view, embedded.embedded, out)
    data, test_set = hold_out_test(stack(pairs, labels), options.test_size, options.fit.seed, out)
    main = fit_view(data, len(labels), options, on_epoch)
    fusion, text_test, fusion_note = _late_fusion(main, text_pairs, labels, options)
    head = main.head
    summary = TrainSummary(
        out=out,
        labels=labels,
        encoder_spec=encoder.spec,
        fallback_reason=loaded.fallback_reason,
        embed=embedded,
        n_train=len(main.train.items),
        n_val=len(main.val.items),
        search=main.results,
        config=main.config,
        fit=main.fit,
        seconds=time.perf_counter() - started,
        test_report=_test_report(head, test_set, labels, out, fusion, text_test) if test_set is not None else None,
        fusion=fusion_note,
        ray=ray_run,
    )
    meta = _meta(manifest, summary, encoder.identity, head, options)
    meta["features"] = view.meta() if view is not None else {"mode": "acoustic"}
    if fusion is not None:
        meta["fusion"] = fusion_meta(fusion)
    if view is not None:
        save_tfidf(view, out)
    model = TrainedModel(head, labels, encoder.spec, encoder.identity, options.windows, meta, fusion=fusion)
    save_model(out, model)
    if view is None:  # a transformers export classifies audio alone: not possible with text features
        export_probe(encoder.spec, head, labels, out)
    return summary


def _embed(
    items: list[Item], encoder: Encoder, view: TextView | None, options: TrainOptions
) -> tuple[EmbedResult, RayRun | None]:
    """Embed ``items`` (on Ray first when asked: this pass then reads the cache and skips Ray's failures)."""
    ray_run = None
    if options.ray is not None:
        from .distributed import embed_on_ray

        features = options.features if view is not None else None  # the workers transcribe too
        ray_run = embed_on_ray(items, encoder.spec, options.precision, options.cache_dir, options.windows,
                               fetch=options.fetch, options=options.ray, progress=options.progress,
                               features=features)  # fmt: skip
        failed = {f.item.where for f in ray_run.result.failures}
        items = [item for item in items if item.where not in failed]
    cache = EmbeddingCache(options.cache_dir, encoder.identity, options.windows)
    same_pass = view.same_pass_cache if view is not None else None
    embedded = embed_items(items, encoder, cache, options.windows, fetch=options.fetch, progress=options.progress,
                           transcripts=same_pass)  # fmt: skip
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
    return (text_pairs if view.mode == "transcript" else embedded), (text_pairs if view.mode == "fused" else None)


def _late_fusion(
    main: ViewFit, text_pairs: list[tuple[Item, Embedded]] | None, labels: list[str], options: TrainOptions
) -> tuple[Fusion | None, Dataset | None, str | None]:
    """With --features fused: the transcript view's probe, the calibration, and a line for the summary."""
    if text_pairs is None:
        return None, None, None
    text_data, text_test = hold_out_test(stack(text_pairs, labels), options.test_size, options.fit.seed, None)
    text_fit = fit_view(text_data, len(labels), options)
    fusion, note = calibrate((main.head, main.val), (text_fit.head, text_fit.val), labels)
    return fusion, text_test, note


def _text_view(options: TrainOptions, encoder: Encoder) -> TextView | None:
    if options.features.mode == "acoustic":
        return None
    return TextView(options.features, encoder, options.cache_dir, options.windows)


def _meta(
    manifest: Path, s: TrainSummary, encoder_identity: str, head: ProbeHead, options: TrainOptions
) -> dict[str, Any]:
    best = s.fit.history[s.fit.best_epoch - 1]
    return build_meta(
        labels=s.labels,
        encoder_spec=s.encoder_spec,
        encoder_identity=encoder_identity,
        windows=options.windows,
        head_shape=(head.mean.shape[0], head.mean.shape[1]),
        config=s.config,
        training={
            "manifest": str(manifest),
            "n_train_recordings": s.n_train,
            "n_val_recordings": s.n_val,
            "n_failed": len(s.embed.failures),
            "fit": asdict(options.fit),
            "search": [{"config": c, "val_macro_f1": f} for c, f in s.search],
            "best_epoch": s.fit.best_epoch,
            "epochs_run": len(s.fit.history),
            "fallback_reason": s.fallback_reason,
        },
        metrics={"val_accuracy": best.val_acc, "val_macro_f1": best.val_f1, "val_loss": best.val_loss},
    )
