"""``evaluate``: a trained model on a labelled manifest's rows -> report files and the report itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.errors import ManifestError
from audioclf.evaluation.calibration import sigmoid
from audioclf.evaluation.metrics import compute_report, view_reports
from audioclf.evaluation.multilabel_metrics import multilabel_report
from audioclf.evaluation.pooling import recording_max
from audioclf.evaluation.report import write_report
from audioclf.evaluation.report_types import ClassificationReport, MultiLabelReport, Report
from audioclf.evaluation.risk_coverage import abstain_report, checked_min_confidence
from audioclf.evaluation.segments import SegmentOptions
from audioclf.evaluation.window_logits import WindowLogits
from audioclf.extraction.embed import EmbedResult, write_failures
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions
from audioclf.io.label_sets import multi_hot
from audioclf.io.manifest import SPLITS, Item, labels_of, load_manifest
from audioclf.labelling.apply import apply_model
from audioclf.labelling.prediction import PredictOptions
from audioclf.model.folder import TrainedModel
from audioclf.model.training_set import TrainingSet
from audioclf.scoring.segments import evaluate_segments
from audioclf.speech.text_features import write_transcripts

SPLIT_CHOICES = ("auto", "all", *SPLITS)
EVALUATION_DIR = "evaluation"  # beside report/, which holds training's own held-out report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    report: Report  # as report.json: "recording" and "window" levels, per class, confusion, CIs (or multi-label)
    out: Path
    paths: list[Path]  # the files written
    embed: EmbedResult  # what was embedded, read from the cache, or failed
    seen: SeenRows  # the rows the model was trained on: left out, or counted when asked


def rows_for_split(manifest: Path, split: str) -> list[Item]:
    """``auto``: the test rows if there are any, else every row; ``all``; or one split's rows."""
    items = load_manifest(manifest)
    if split == "auto":
        test = [item for item in items if item.split == "test"]
        return test or items
    if split == "all":
        return items
    if split not in SPLITS:
        raise ManifestError(f"split {split!r}: use {', '.join(SPLIT_CHOICES)}")
    chosen = [item for item in items if item.split == split]
    if not chosen:
        raise ManifestError(f"{manifest}: no rows with split={split}")
    return chosen


@dataclass(frozen=True)
class SeenRows:
    """Rows of the evaluated manifest that the model was trained on (same group, source or audio)."""

    n: int  # how many of the chosen rows the model had seen
    counted: bool  # True only when asked to score them anyway: the report is then no held-out estimate
    known: bool = True  # False for a model saved before its training rows were recorded

    def line(self) -> str | None:
        if not self.known:
            return "unknown: this model does not record its training rows (retrain to have them left out)"
        if not self.n:
            return None
        if self.counted:
            return f"{self.n} row(s) the model was trained on are counted: this is not a held-out estimate"
        return f"{self.n} row(s) the model was trained on (same group, file or audio) were left out"


def held_out_rows(
    model: TrainedModel, items: list[Item], manifest: Path, include_training: bool
) -> tuple[list[Item], SeenRows]:
    """The rows to score: those the model never saw, unless ``include_training``. Refuses when none is left."""
    record = TrainingSet.load(model.path) if model.path is not None else None
    if record is None:
        log.warning("%s does not record its training rows; every chosen row is scored", model.path or "the model")
        return items, SeenRows(0, include_training, known=False)
    seen = [record.seen(item) for item in items]
    n_seen = sum(seen)
    if include_training:
        return items, SeenRows(n_seen, True)
    kept = [item for item, was_seen in zip(items, seen, strict=True) if not was_seen]
    if not kept:
        raise ManifestError(
            f"{manifest}: all {len(items)} chosen row(s) were used to train this model (same group, file or audio); "
            "evaluate on rows it has not seen, or count training rows explicitly (not a held-out estimate)",
            option="include_training",
        )
    return kept, SeenRows(n_seen, False)


def evaluate_model(
    model: TrainedModel,
    manifest: Path,
    cache_dir: Path,
    *,
    split: str = "auto",
    out: Path | None = None,
    fetch: FetchOptions | None = None,
    windows: WindowOptions | None = None,
    segments: SegmentOptions | None = None,
    min_confidence: float | None = None,
    include_training: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Score ``model`` on ``manifest``'s rows; write report.json, report.md, confusion.png (and failures.csv,
    transcripts.csv where they apply) into ``out`` (default: the model folder's ``evaluation/``; ``report/`` is
    training's held-out report and is never replaced). Rows the model was trained on are left out unless
    ``include_training``. Rows with a time
    range are also scored as segments of their whole recording (``report["segments"]``, with ``segments``).
    ``windows`` replaces the model's windows (segments default to a hop of half a window). The risk-coverage
    report uses ``min_confidence``, else the threshold chosen at training where the model has one."""
    checked_min_confidence(min_confidence)
    items, seen = held_out_rows(model, rows_for_split(manifest, split), manifest, include_training)
    unknown = sorted(set(labels_of(items)) - set(model.labels))
    if unknown:
        raise ManifestError(
            f"{manifest}: labels {unknown} were not in the model's training labels {model.labels}; "
            "evaluate on the same label set"
        )
    preds, result = apply_model(model, items, cache_dir, fetch=fetch, windows=windows, progress=progress)
    if out is None:
        if model.path is None:
            raise ManifestError("the model has no folder: give a folder for the report")
        out = model.path / EVALUATION_DIR
    if result.failures:
        write_failures(result.failures, out / "failures.csv")
    report: Report
    if preds.thresholds is not None:
        report = _multilabel_report(preds, result, preds.thresholds)
    else:
        if min_confidence is None and model.has_min_confidence:
            min_confidence = model.min_confidence
        report = _single_label_report(preds, min_confidence)
    chosen = PredictOptions(segments=segments, windows=windows)
    scored = evaluate_segments(model, items, cache_dir, chosen, fetch=fetch, progress=progress)
    if scored is not None:
        report["segments"] = scored
    return _written(model, manifest, out, report, preds, result, seen)


def _single_label_report(preds: WindowLogits, min_confidence: float | None) -> ClassificationReport:
    """compute_report, with each view alone (a fused model) and the risk-coverage report."""
    report = compute_report(preds)
    if preds.views:
        report["views"] = view_reports(preds)
    abstain = abstain_report(preds, min_confidence)
    if abstain is not None:
        report["abstain"] = abstain
    return report


def _multilabel_report(preds: WindowLogits, result: EmbedResult, thresholds: np.ndarray) -> MultiLabelReport:
    """Recording probabilities (max over windows of each label's sigmoid) against the rows' label sets."""
    by_source = {item.source: item for item, _ in result.embedded}
    truth = multi_hot([by_source[s].label for s in preds.recordings], preds.labels)
    logits = recording_max(np.asarray(preds.window_logits, dtype=np.float64), preds.window_recording, len(truth))
    return multilabel_report(sigmoid(logits), truth, thresholds, preds.labels)


def _written(
    model: TrainedModel,
    manifest: Path,
    out: Path,
    report: Report,
    preds: WindowLogits,
    result: EmbedResult,
    seen: SeenRows,
) -> Evaluation:
    context: dict[str, str | int] = {"manifest": str(manifest), "encoder": str(model.encoder_spec)}
    context |= {"n_failed": len(result.failures), "training_rows": seen.line() or "none among the rows"}
    if model.path is not None:
        context = {"model": str(model.path), **context}
    paths = write_report(report, out, context=context)
    if preds.transcripts is not None:  # text-feature models: what each evaluated recording says
        by_source = {item.source: item for item, _ in result.embedded}
        write_transcripts([by_source[s] for s in preds.recordings], preds.transcripts, out / "transcripts.csv")
        paths.append(out / "transcripts.csv")
    return Evaluation(report, out, paths, result, seen)
