"""Evaluation: recording- and window-level metrics with cluster-bootstrap CIs, and the report files."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from .errors import AudioclfError
from .fileio import atomic_path, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

MAX_ERRORS = 20
_BOOTSTRAP_CHUNK = 1_000_000  # max resampled cluster indices held in memory at once


@dataclass(frozen=True)
class Predictions:
    labels: list[str]  # class names; class id = index
    window_logits: np.ndarray  # [n_windows, n_classes] float32 — classifier logits per window
    window_recording: np.ndarray  # [n_windows] int — index into `recordings` for each window
    window_starts_s: np.ndarray  # [n_windows] float — window start in seconds within its recording
    recordings: list[str]  # recording ids (file path or URL), one per recording
    recording_true: np.ndarray  # [n_recordings] int true class id, or -1 when unknown (predict-only)
    recording_groups: list[str]  # group of each recording (speaker / video / fold) — for the bootstrap


def _validate(preds: Predictions) -> None:
    logits = np.asarray(preds.window_logits)
    n_rec, n_classes = len(preds.recordings), len(preds.labels)
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise AudioclfError(f"window_logits has shape {logits.shape}, expected [n_windows, {n_classes}]")
    if n_classes < 1:
        raise AudioclfError("predictions have no class labels")
    n_win = logits.shape[0]
    if len(preds.window_recording) != n_win or len(preds.window_starts_s) != n_win:
        raise AudioclfError(
            f"window arrays disagree: {n_win} logits rows, {len(preds.window_recording)} recording "
            f"indices, {len(preds.window_starts_s)} start times"
        )
    if len(preds.recording_true) != n_rec or len(preds.recording_groups) != n_rec:
        raise AudioclfError(
            f"recording arrays disagree: {n_rec} recordings, {len(preds.recording_true)} true labels, "
            f"{len(preds.recording_groups)} groups"
        )
    win_rec = np.asarray(preds.window_recording)
    if n_win and (win_rec.min() < 0 or win_rec.max() >= n_rec):
        raise AudioclfError(f"window_recording has indices outside 0..{n_rec - 1}")
    true = np.asarray(preds.recording_true)
    if n_rec and (true.min() < -1 or true.max() >= n_classes):
        raise AudioclfError(f"recording_true has class ids outside -1..{n_classes - 1}")
    if not np.all(np.isfinite(logits)):
        raise AudioclfError("window_logits contain NaN or infinite values")


def recording_logits(preds: Predictions) -> np.ndarray:
    """[n_recordings, n_classes]: mean of the window logits of each recording.

    A recording with no windows gets a row of NaN.
    """
    _validate(preds)
    logits = np.asarray(preds.window_logits, dtype=np.float64)
    win_rec = np.asarray(preds.window_recording, dtype=np.int64)
    n_rec, n_classes = len(preds.recordings), len(preds.labels)
    sums = np.zeros((n_rec, n_classes), dtype=np.float64)
    np.add.at(sums, win_rec, logits)
    counts = np.bincount(win_rec, minlength=n_rec).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means.astype(np.float32)


def _codes(values: NDArray[Any]) -> NDArray[np.int64]:
    """Compact integer codes 0..k-1 for arbitrary values."""
    _, inverse = np.unique(values, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def _bootstrap_ci(
    correct: NDArray[np.bool_], clusters: NDArray[np.int64], boot: tuple[int, float, np.random.Generator]
) -> list[float] | None:
    """Percentile CI of accuracy, resampling whole clusters with replacement.

    Each replicate's accuracy is (correct items in the drawn clusters) / (items in the drawn clusters),
    i.e. exactly ``accuracy_score`` on the concatenated resample, computed by counting for speed.
    """
    n_bootstrap, ci, rng = boot
    if n_bootstrap <= 0 or len(correct) == 0:
        return None
    k = int(clusters.max()) + 1
    hits = np.bincount(clusters, weights=correct.astype(np.float64), minlength=k)
    sizes = np.bincount(clusters, minlength=k).astype(np.float64)
    stats = np.empty(n_bootstrap, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK // k)
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        idx = rng.integers(0, k, size=(stop - start, k))
        stats[start:stop] = hits[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.percentile(stats, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return [float(lo), float(hi)]


def _pick_clusters(candidates: list[tuple[str, NDArray[np.int64]]]) -> tuple[str, NDArray[np.int64]]:
    """First candidate clustering with at least two clusters, else the last (finest) one."""
    for name, codes in candidates:
        if len(codes) and int(codes.max()) >= 1:
            return name, codes
    return candidates[-1]


def _level_metrics(
    y_true: NDArray[np.int64],
    y_pred: NDArray[np.int64],
    clusters: tuple[str, NDArray[np.int64]],
    labels: list[str],
    boot: tuple[int, float, np.random.Generator],
) -> dict[str, Any]:
    class_ids = list(range(len(labels)))
    with warnings.catch_warnings():
        # e.g. "y_pred contains classes not in y_true": expected when a class is absent from the test set
        warnings.simplefilter("ignore")
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=class_ids, zero_division=0
        )
        result: dict[str, Any] = {
            "n": len(y_true),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "accuracy_ci": _bootstrap_ci(y_true == y_pred, clusters[1], boot),
            "ci_resamples": clusters[0],
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    result["per_class"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    result["confusion"] = confusion_matrix(y_true, y_pred, labels=class_ids).tolist()
    return result


def _errors(
    preds: Predictions, rec_idx: NDArray[np.int64], rec_logits: NDArray[np.float64]
) -> tuple[list[dict[str, Any]], int]:
    true = np.asarray(preds.recording_true, dtype=np.int64)[rec_idx]
    pred = rec_logits.argmax(axis=1)
    exp = np.exp(rec_logits - rec_logits.max(axis=1, keepdims=True))
    conf = exp.max(axis=1) / exp.sum(axis=1)  # softmax probability of the predicted class
    wrong = np.flatnonzero(pred != true)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:MAX_ERRORS]
    errors = [
        {
            "recording": preds.recordings[int(rec_idx[i])],
            "true": preds.labels[int(true[i])],
            "predicted": preds.labels[int(pred[i])],
            "confidence": float(conf[i]),
        }
        for i in order
    ]
    return errors, len(wrong)


def _included_recordings(preds: Predictions, rec_logits: NDArray[np.float64]) -> NDArray[np.int64]:
    """Indices of recordings with a known label and at least one window; raise if there are none."""
    labelled = np.asarray(preds.recording_true) >= 0
    has_windows = ~np.isnan(rec_logits).any(axis=1)
    if not labelled.any():
        raise AudioclfError("no recording has a known label: cannot evaluate (all recording_true are -1)")
    if not (labelled & has_windows).any():
        raise AudioclfError("no labelled recording has any prediction windows: cannot evaluate")
    if (labelled & ~has_windows).any():
        logger.warning("%d labelled recordings have no windows; excluded", int((labelled & ~has_windows).sum()))
    return np.flatnonzero(labelled & has_windows).astype(np.int64)


def compute_report(preds: Predictions, *, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """JSON-serialisable evaluation report (plain Python numbers only, None where undefined).

    Keys: labels, n_groups, n_recordings_total, n_recordings_excluded, ci, n_bootstrap, seed, n_errors,
    errors (up to 20 misclassified recordings, most confident first), and the levels "recording" and
    "window", each with n, accuracy, accuracy_ci, ci_resamples, balanced_accuracy, macro_f1, per_class,
    confusion. Recordings with unknown truth (-1) or without windows are excluded from every metric.
    Accuracy CIs resample groups (cluster bootstrap); with a single group they resample recordings
    (and, at window level with a single recording, windows).
    """
    if not 0.0 < ci < 1.0:
        raise AudioclfError(f"ci must be between 0 and 1 (exclusive), got {ci}")
    if n_bootstrap < 0:
        raise AudioclfError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    rec_logits = recording_logits(preds).astype(np.float64)
    rec_idx = _included_recordings(preds, rec_logits)
    true_all = np.asarray(preds.recording_true, dtype=np.int64)
    groups_all = _codes(np.asarray(preds.recording_groups, dtype=object).astype(str))
    rng_rec, rng_win = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    rec_pred = rec_logits[rec_idx].argmax(axis=1).astype(np.int64)
    rec_clusters = _pick_clusters(
        [("groups", _codes(groups_all[rec_idx])), ("recordings", np.arange(len(rec_idx), dtype=np.int64))]
    )
    recording = _level_metrics(true_all[rec_idx], rec_pred, rec_clusters, preds.labels, (n_bootstrap, ci, rng_rec))

    win_mask = np.isin(np.asarray(preds.window_recording), rec_idx)
    win_rec = np.asarray(preds.window_recording, dtype=np.int64)[win_mask]
    win_pred = np.asarray(preds.window_logits)[win_mask].argmax(axis=1).astype(np.int64)
    win_clusters = _pick_clusters(
        [
            ("groups", _codes(groups_all[win_rec])),
            ("recordings", _codes(win_rec)),
            ("windows", np.arange(len(win_rec), dtype=np.int64)),
        ]
    )
    window = _level_metrics(true_all[win_rec], win_pred, win_clusters, preds.labels, (n_bootstrap, ci, rng_win))

    errors, n_errors = _errors(preds, rec_idx, rec_logits[rec_idx])
    report: dict[str, Any] = _jsonable(
        {
            "labels": list(preds.labels),
            "n_groups": len(np.unique(groups_all[rec_idx])),
            "n_recordings_total": len(preds.recordings),
            "n_recordings_excluded": len(preds.recordings) - len(rec_idx),
            "ci": ci,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "recording": recording,
            "window": window,
            "n_errors": n_errors,
            "errors": errors,
        }
    )
    return report


def _jsonable(value: Any) -> Any:
    """Recursively convert to plain JSON types: numpy -> Python, NaN/inf -> None, Path -> str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_ci(report: dict[str, Any], level: dict[str, Any]) -> str:
    ci = level.get("accuracy_ci")
    pct = round(100 * float(report.get("ci", 0.95)))
    return "no CI" if ci is None else f"{pct}% CI {_fmt(ci[0], 2)}\N{EN DASH}{_fmt(ci[1], 2)}"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _markdown(report: dict[str, Any], title: str) -> str:
    labels: list[str] = report["labels"]
    rec = report["recording"]
    lines = [f"# {title}", ""]
    lines.append(f"{rec['n']} labelled recordings in {report['n_groups']} groups; {len(labels)} classes.")
    if report.get("n_recordings_excluded"):
        lines.append(f"{report['n_recordings_excluded']} recordings excluded (unknown label or no windows).")
    lines += ["", "## Summary", ""]
    rows = []
    for name in ("recording", "window"):
        lvl = report[name]
        acc = f"{_fmt(lvl['accuracy'])} ({_fmt_ci(report, lvl)})"
        rows.append([name, str(lvl["n"]), acc, _fmt(lvl["balanced_accuracy"]), _fmt(lvl["macro_f1"])])
    lines += _md_table(["level", "n", "accuracy", "balanced accuracy", "macro-F1"], rows)
    units = f"recording level: {rec['ci_resamples']}, window level: {report['window']['ci_resamples']}"
    lines += ["", f"CIs: bootstrap percentile, {report.get('n_bootstrap')} resamples ({units})."]
    lines += ["", "## Per class (recording level)", ""]
    per = [
        [lab, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"])]
        for lab, m in rec["per_class"].items()
    ]
    lines += _md_table(["class", "precision", "recall", "F1", "support"], per)
    lines += ["", "## Confusion matrix (recording level; rows = true, columns = predicted)", ""]
    conf_rows = [[lab] + [str(c) for c in row] for lab, row in zip(labels, rec["confusion"], strict=True)]
    lines += _md_table(["true \\ predicted", *labels], conf_rows)
    lines += [
        "",
        f"## Misclassified recordings ({report.get('n_errors')} total, most confident first)",
        "",
    ]
    if report["errors"]:
        err_rows = [[e["recording"], e["true"], e["predicted"], _fmt(e["confidence"])] for e in report["errors"]]
        lines += _md_table(["recording", "true", "predicted", "confidence"], err_rows)
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def _confusion_figure(report: dict[str, Any], title: str) -> Figure:
    labels: list[str] = report["labels"]
    counts = np.asarray(report["recording"]["confusion"], dtype=np.float64)
    n = len(labels)
    ticks = [lab if len(lab) <= 30 else lab[:29] + "\N{HORIZONTAL ELLIPSIS}" for lab in labels]
    row_sums = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    side = min(20.0, max(4.5, 0.3 * n + 3.0))
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.6, pad=0.02, label="fraction of true class")
    font = 10.0 if n <= 10 else 8.0 if n <= 25 else 6.5
    for i in range(n):
        for j in range(n):
            if counts[i, j] or n <= 15:
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=font, color=color)
    tick_font = max(font, 7.5)
    ax.set_xticks(range(n), ticks, rotation=90 if n > 6 else 45, ha="center" if n > 6 else "right")
    ax.tick_params(labelsize=tick_font)
    ax.set_yticks(range(n), ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nrecording level, n={report['recording']['n']}", fontsize=10)
    return fig


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    *,
    title: str = "audioclf evaluation",
    context: dict[str, Any] | None = None,
) -> list[Path]:
    """Write report.json (with ``context``), report.md and confusion.png into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = out_dir / "report.json", out_dir / "report.md", out_dir / "confusion.png"
    write_json_atomic(json_path, _jsonable({**report, "context": context or {}}))
    write_text_atomic(md_path, _markdown(report, title))
    fig = _confusion_figure(report, title)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return [json_path, md_path, png_path]


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few short lines for a terminal: one per level, plus exclusions if any."""
    lines = []
    for name, head in (("recording", "recordings:"), ("window", "windows:")):
        lvl = report[name]
        lines.append(
            f"{head:<12}{lvl['n']}  accuracy {_fmt(lvl['accuracy'])} ({_fmt_ci(report, lvl)})  "
            f"balanced {_fmt(lvl['balanced_accuracy'])}  macro-F1 {_fmt(lvl['macro_f1'])}"
        )
    if report.get("n_recordings_excluded"):
        lines.append(f"excluded:   {report['n_recordings_excluded']} recordings (unknown label or no windows)")
    return lines
