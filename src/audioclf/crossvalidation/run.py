"""Cross-validation: the whole train -> evaluate loop once per grouped fold, pooled into one report.

Each fold is a manifest of its own (``<out>/folds/fold_<k>.csv``, the held-out rows with split=test), trained by
:func:`audioclf.fitting.train_probe.train` into ``<out>/fold_<k>/`` and scored on its held-out rows through
``apply_model`` and ``compute_report``. All folds share the embedding cache, so each recording is embedded
once. A finished fold is kept on a rerun. torch and scikit-learn are imported when a run starts:
``import audioclf`` stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioclf.crossvalidation.folds import assign_folds, fold_group, fold_manifest
from audioclf.crossvalidation.report import OverFolds, over_folds, write_outputs
from audioclf.encoders.spec import ModelSpec
from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_write, write_json_atomic, write_text_atomic
from audioclf.io.manifest import Item, check_two_labels, labels_of, load_manifest

if TYPE_CHECKING:
    from audioclf.evaluation.report_types import ClassificationReport
    from audioclf.evaluation.window_logits import WindowLogits
    from audioclf.extraction.embed import Failure
    from audioclf.fitting.train_probe import TrainOptions

log = logging.getLogger(__name__)

DONE = "crossval_fold.json"  # written last into a fold's folder: the fold is finished
UNSEEN = -1e9  # logit of a label that a fold's model never saw (all its rows were held out or failed)
NOT_RESULT = frozenset({"force", "progress", "cache_dir", "fetch", "ray", "test_size"})  # change no result


def _default_train() -> TrainOptions:
    from audioclf.fitting.train_probe import TrainOptions

    return TrainOptions()


@dataclass(frozen=True)
class CrossvalOptions:
    folds: int = 5  # grouped, label-stratified folds (fewer when there are fewer groups)
    fold_column: str | None = None  # take each row's fold from this manifest column ("group": one per group)
    train: TrainOptions = field(default_factory=_default_train)  # its test_size and force are not used
    force: bool = False  # redo every fold; otherwise a finished fold (same fold manifest and options) is kept
    seed: int = 0  # of the fold assignment


@dataclass(frozen=True)
class FoldResult:
    fold: int  # 1..K
    n_folds: int  # K
    name: str  # the fold's value in the fold column, or its number
    out: Path  # the fold's model; its report is in out/report
    groups: list[str]  # the held-out groups
    n_test: int  # held-out recordings scored
    accuracy: float | None  # recording level; None when no held-out recording could be read
    macro_f1: float | None
    balanced_accuracy: float | None
    accuracy_ci: list[float] | None  # group bootstrap within the fold
    config: str  # the probe that the fold's own model selection chose
    n_train: int  # recordings the fold's model was trained on
    n_failed: int
    seconds: float
    reused: bool = False  # kept from an earlier run


@dataclass(frozen=True)
class CrossvalResult:
    out: Path
    folds: list[FoldResult]
    report: ClassificationReport  # compute_report of the pooled out-of-fold predictions (CI: group bootstrap)
    over_folds: dict[str, OverFolds]  # of accuracy and macro_f1
    labels: list[str]
    encoder: str
    fallback_reason: str | None  # the default encoder could not be loaded: why
    failures: list[Failure]  # every skipped file, once, with its row in the given manifest
    folds_from: str  # how the folds were made
    n_rows: int
    paths: list[Path] = field(default_factory=list)  # files written


@dataclass(frozen=True)
class _Run:
    out: Path
    items: list[Item]
    labels: list[str]
    options: CrossvalOptions
    key: str  # the training options that can change a fold's result
    n_folds: int


@dataclass(frozen=True)
class _Fold:
    result: FoldResult
    preds: WindowLogits  # over all labels of the manifest
    failures: list[Failure]


def crossval(
    manifest: Path, out: Path, options: CrossvalOptions, on_fold: Callable[[FoldResult], None] | None = None
) -> CrossvalResult:
    """The whole ``audioclf crossval`` flow; ``on_fold`` is called as each fold finishes."""
    manifest, out = Path(manifest), Path(out)
    items = load_manifest(manifest)
    labels = labels_of(items)
    check_two_labels(labels, manifest)
    fold, names, how = assign_folds(items, manifest, options.folds, options.seed, options.fold_column)
    if any(item.split for item in items):
        log.info("crossval uses all %d rows and ignores the split column: each row is held out by one fold", len(items))
    train_options, fallback = _resolve_encoder(options.train)
    run = _Run(out, items, labels, replace(options, train=train_options), _options_key(train_options), len(names))
    done: list[_Fold] = []
    for n, name in enumerate(names):
        done.append(_run_fold(run, n + 1, fold == n, name))
        if on_fold is not None:
            on_fold(done[-1].result)
    report = _report(_pool([d.preds for d in done], labels))
    scored = [d.result for d in done if d.result.accuracy is not None]
    stats = {metric: over_folds([getattr(r, metric) for r in scored]) for metric in ("accuracy", "macro_f1")}
    failures = list({(f.item.source, f.item.where): f for d in done for f in d.failures}.values())
    result = CrossvalResult(
        out=out,
        folds=[d.result for d in done],
        report=report,
        over_folds=stats,
        labels=labels,
        encoder=str(train_options.encoder or ""),
        fallback_reason=fallback,
        failures=failures,
        folds_from=how,
        n_rows=len(items),
    )
    return replace(result, paths=write_outputs(result, manifest))


def _resolve_encoder(options: TrainOptions) -> tuple[TrainOptions, str | None]:
    """The default encoder resolved once (with its fallback), so that every fold uses the same one."""
    if options.encoder is not None:
        return options, None
    from audioclf.encoders.loader import load_encoder

    loaded = load_encoder(None, options.precision)
    return replace(options, encoder=loaded.encoder.spec), loaded.fallback_reason


def _options_key(options: TrainOptions) -> str:
    def plain(value: Any) -> Any:  # a spec as it is written; other options field by field (json recurses)
        if is_dataclass(value) and not isinstance(value, type | ModelSpec):
            return {f.name: getattr(value, f.name) for f in fields(value)}
        return str(value)

    kept = {f.name: getattr(options, f.name) for f in fields(options) if f.name not in NOT_RESULT}
    return json.dumps(kept, sort_keys=True, default=plain)


def _run_fold(run: _Run, k: int, held: np.ndarray, name: str) -> _Fold:
    """Fold ``k`` (1-based): train on the other rows, score the held-out ones, unless an earlier run did."""
    text = fold_manifest(run.items, held)
    manifest, fold_dir = run.out / "folds" / f"fold_{k}.csv", run.out / f"fold_{k}"
    write_text_atomic(manifest, text)
    key = {"manifest_sha256": hashlib.sha256(text.encode()).hexdigest(), "options": run.key}
    done = None if run.options.force else _finished(fold_dir, key, run.labels)
    if done is not None:
        return done
    (fold_dir / DONE).unlink(missing_ok=True)
    started = time.perf_counter()
    summary, preds, scored, failures = _train_and_apply(run, manifest, fold_dir, k)
    wide = _widen(preds, scored, run.labels)
    report = _fold_report(wide, k, manifest, fold_dir)
    rec = report["recording"] if report is not None else None
    groups = sorted({fold_group(item) for item, out in zip(run.items, held.tolist(), strict=True) if out})
    result = FoldResult(
        fold=k,
        n_folds=run.n_folds,
        name=name,
        out=fold_dir,
        groups=groups,
        n_test=rec["n"] if rec else 0,
        accuracy=rec["accuracy"] if rec else None,
        macro_f1=rec["macro_f1"] if rec else None,
        balanced_accuracy=rec["balanced_accuracy"] if rec else None,
        accuracy_ci=rec["accuracy_ci"] if rec else None,
        config=summary.run.config.describe(),
        n_train=summary.n_train,
        n_failed=len(failures),
        seconds=time.perf_counter() - started,
    )
    _save_predictions(fold_dir / "predictions.npz", wide)
    record = {f.name: getattr(result, f.name) for f in fields(result) if f.name not in ("out", "reused")}
    rows = [{"source": f.item.source, "row": f.item.where, "reason": f.reason} for f in failures]
    write_json_atomic(fold_dir / DONE, {**key, "result": record, "failures": rows})
    return _Fold(result, wide, failures)


def _train_and_apply(
    run: _Run, manifest: Path, fold_dir: Path, k: int
) -> tuple[Any, WindowLogits, list[Item], list[Failure]]:
    """(TrainSummary, the held-out predictions, the items they are of, every failure of the fold)."""
    from audioclf.fitting.train_probe import train
    from audioclf.labelling.apply import apply_model
    from audioclf.model.folder import load_model

    options = replace(run.options.train, force=True, test_size=None)  # this fold is being (re)done
    try:
        summary = train(manifest, fold_dir, options)
        test = [item for item in load_manifest(manifest) if item.split == "test"]
        model = load_model(fold_dir)
        preds, applied = apply_model(model, test, options.cache_dir, fetch=options.fetch, progress=options.progress)
    except AudioclfError as exc:
        raise type(exc)(f"fold {k} ({manifest}): {exc}") from None
    failures = [_in_manifest(f, manifest, run.items) for f in (*summary.failures, *applied.failures)]
    return summary, preds, [item for item, _ in applied.embedded], failures


def _in_manifest(failure: Failure, fold_csv: Path, items: Sequence[Item]) -> Failure:
    """The failure with the row of the user's manifest instead of the fold manifest's (same order)."""
    line, _, entry = failure.item.where.removeprefix(f"{fold_csv}:").partition("#")  # "#n": a playlist entry
    if line.isdigit() and 2 <= int(line) <= len(items) + 1:
        row = items[int(line) - 2]
        if row.source == failure.item.source or entry:
            where = row.where + (f"#{entry}" if entry else "")
            return replace(failure, item=replace(failure.item, where=where))
    return failure


def _widen(preds: WindowLogits, items: Sequence[Item], labels: list[str]) -> WindowLogits:
    """A fold's predictions over the labels of the whole manifest (a fold's model may lack some)."""
    cols = [labels.index(label) for label in preds.labels]

    def wide(a: np.ndarray) -> np.ndarray:
        out = np.full((len(a), len(labels)), UNSEEN, dtype=np.float32)
        out[:, cols] = a
        return out

    views = {name: wide(v) for name, v in preds.views.items()} if preds.views else None
    true = np.array([labels.index(item.label or "") for item in items], dtype=np.int64)
    return replace(
        preds,
        labels=list(labels),
        window_logits=wide(preds.window_logits),
        recording_true=true,
        views=views,
        transcripts=None,
    )


def _report(preds: WindowLogits) -> ClassificationReport:
    from audioclf.evaluation.metrics import compute_report, view_reports

    report = compute_report(preds)
    if preds.views:
        report["views"] = view_reports(preds)
    return report


def _fold_report(wide: WindowLogits, k: int, manifest: Path, fold_dir: Path) -> ClassificationReport | None:
    from audioclf.evaluation.report import write_report

    if not wide.recordings:
        log.warning("fold %d: none of its held-out recordings could be read, so it has no score", k)
        return None
    report = _report(wide)
    context = {"fold": k, "fold_manifest": str(manifest), "model": str(fold_dir)}
    write_report(report, fold_dir / "report", title=f"audioclf crossval, fold {k}", context=context)
    return report


def _save_predictions(path: Path, p: WindowLogits) -> None:
    arrays: dict[str, np.ndarray] = {
        "labels": np.array(p.labels, dtype=str),
        "window_logits": p.window_logits,
        "window_recording": p.window_recording,
        "window_starts_s": p.window_starts_s,
        "recordings": np.array(p.recordings, dtype=str),
        "recording_true": p.recording_true,
        "recording_groups": np.array(p.recording_groups, dtype=str),
        **{f"view_{name}": v for name, v in (p.views or {}).items()},
    }
    atomic_write(path, lambda fh: np.savez(fh, allow_pickle=False, **arrays))


def _finished(fold_dir: Path, key: dict[str, str], labels: list[str]) -> _Fold | None:
    """An earlier run's result of this fold, if it finished with the same fold manifest and options."""
    from audioclf.evaluation.window_logits import WindowLogits
    from audioclf.extraction.embed import Failure

    try:
        done = json.loads((fold_dir / DONE).read_text())
        if any(done.get(k) != v for k, v in key.items()) or not (fold_dir / "audioclf.json").is_file():
            return None
        with np.load(fold_dir / "predictions.npz", allow_pickle=False) as z:
            views = {name.removeprefix("view_"): z[name] for name in z.files if name.startswith("view_")}
            strings = {name: z[name].tolist() for name in ("labels", "recordings", "recording_groups")}
            arrays = {name: z[name] for name in ("window_logits", "window_recording", "window_starts_s")}
            preds = WindowLogits(**strings, **arrays, recording_true=z["recording_true"], views=views or None)
        result = FoldResult(**{**done["result"], "out": fold_dir, "reused": True})
        failures = [Failure(Item(f["source"], None, None, "", f["row"]), f["reason"]) for f in done["failures"]]
    except (OSError, ValueError, KeyError, TypeError):  # missing, half-written or from another version: redo
        return None
    if preds.labels != labels or (result.n_test and not (fold_dir / "report" / "report.json").is_file()):
        return None
    return _Fold(result, preds, failures)


def _pool(parts: Sequence[WindowLogits], labels: list[str]) -> WindowLogits:
    """All folds' out-of-fold predictions as one set: every recording was held out exactly once."""
    from audioclf.evaluation.window_logits import WindowLogits

    offsets = np.cumsum([0, *(len(p.recordings) for p in parts)])
    views = None
    if all(p.views for p in parts):
        views = {name: np.concatenate([(p.views or {})[name] for p in parts]) for name in parts[0].views or {}}
    return WindowLogits(
        labels=labels,
        window_logits=np.concatenate([p.window_logits for p in parts]),
        window_recording=np.concatenate([p.window_recording + o for p, o in zip(parts, offsets[:-1], strict=True)]),
        window_starts_s=np.concatenate([p.window_starts_s for p in parts]),
        recordings=[r for p in parts for r in p.recordings],
        recording_true=np.concatenate([p.recording_true for p in parts]),
        recording_groups=[g for p in parts for g in p.recording_groups],
        views=views,
    )
