"""Report files of an evaluation: report.json, a readable report.md, confusion.png and reliability.png; terminal
summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audioclf.evaluation.metrics import jsonable
from audioclf.evaluation.multilabel_metrics import multilabel_markdown, multilabel_summary_lines
from audioclf.evaluation.report_types import (
    AbstainReport,
    ClassificationReport,
    LevelReport,
    Report,
    SegmentReport,
)
from audioclf.fileio import atomic_path, write_json_atomic, write_text_atomic


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_ci(report: ClassificationReport, level: LevelReport) -> str:
    ci = level.get("accuracy_ci")
    pct = round(100 * float(report.get("ci", 0.95)))
    return "no CI" if ci is None else f"{pct}% CI {_fmt(ci[0], 2)}\N{EN DASH}{_fmt(ci[1], 2)}"


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _markdown(report: ClassificationReport, title: str) -> str:
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
    for name, lvl in (report.get("views") or {}).items():  # a fused model's views, each alone
        acc = f"{_fmt(lvl['accuracy'])} ({_fmt_ci(report, lvl)})"
        rows.append(
            [f"recording, {name} view alone", str(lvl["n"]), acc, _fmt(lvl["balanced_accuracy"]), _fmt(lvl["macro_f1"])]
        )
    lines += _md_table(["level", "n", "accuracy", "balanced accuracy", "macro-F1"], rows)
    units = f"recording level: {rec['ci_resamples']}, window level: {report['window']['ci_resamples']}"
    lines += ["", f"CIs: bootstrap percentile, {report.get('n_bootstrap')} resamples ({units})."]
    lines += ["", "## Per class (recording level)", ""]
    per = [
        [lab, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"])]
        for lab, m in rec["per_class"].items()
    ]
    lines += _md_table(["class", "precision", "recall", "F1", "support"], per)
    cal = rec.get("calibration")
    if cal is not None:
        lines += [
            "",
            f"Calibration (recording level, {len(cal['bins'])} bins; reliability.png): ECE {_fmt(cal['ece'])}, "
            f"Brier {_fmt(cal['brier'])}, NLL {_fmt(cal['nll'])}",
        ]
    lines += _abstain_markdown(report.get("abstain"))
    lines += _segment_markdown(report.get("segments"))
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


def _confusion_figure(report: ClassificationReport, title: str) -> Figure:
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


def _reliability_figure(report: ClassificationReport, title: str) -> Figure:
    """Accuracy against confidence per bin (the diagonal is perfect calibration), bar widths the bins."""
    cal = report["recording"]["calibration"]
    bins = [b for b in cal["bins"] if b["n"]]
    fig = Figure(figsize=(5.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    lows, widths = [b["low"] for b in bins], [b["high"] - b["low"] for b in bins]
    accuracy = np.array([b["accuracy"] for b in bins], dtype=np.float64)  # every bin shown has recordings
    confidence = np.array([b["confidence"] for b in bins], dtype=np.float64)
    ax.bar(lows, accuracy, width=widths, align="edge", edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot(confidence, accuracy, "o", color="black", markersize=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    n = report["recording"]["n"]
    ax.set_title(f"{title}\nrecording level, n={n}, ECE {_fmt(cal['ece'])}", fontsize=10)
    return fig


def write_report(
    report: Report,
    out_dir: Path,
    *,
    title: str = "audioclf evaluation",
    context: Mapping[str, object] | None = None,
) -> list[Path]:
    """Write report.json (with ``context``), report.md, confusion.png and (when the recordings have labels)
    reliability.png into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = out_dir / "report.json", out_dir / "report.md", out_dir / "confusion.png"
    if "task" in report:  # multi-label
        write_json_atomic(json_path, jsonable({**report, "context": context or {}}))
        write_text_atomic(md_path, multilabel_markdown(report, title))
        return [json_path, md_path]
    write_json_atomic(json_path, jsonable({**report, "context": context or {}}))
    write_text_atomic(md_path, _markdown(report, title))
    fig = _confusion_figure(report, title)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    paths = [json_path, md_path, png_path]
    if "calibration" in report["recording"]:
        paths.append(out_dir / "reliability.png")
        with atomic_path(paths[-1]) as tmp:
            _reliability_figure(report, title).savefig(tmp, format="png", dpi=100)
    abstain = report.get("abstain")
    if abstain:
        paths.append(out_dir / "risk_coverage.png")
        with atomic_path(paths[-1]) as tmp:
            _risk_coverage_figure(abstain, title).savefig(tmp, format="png", dpi=100)
    return paths


def summary_lines(report: Report) -> list[str]:
    """A few short lines for a terminal: one per level, plus exclusions if any."""
    if "task" in report:  # multi-label
        return multilabel_summary_lines(report)
    lines = []
    for head, lvl in (("recordings:", report["recording"]), ("windows:", report["window"])):
        lines.append(
            f"{head:<12}{lvl['n']}  accuracy {_fmt(lvl['accuracy'])} ({_fmt_ci(report, lvl)})  "
            f"balanced {_fmt(lvl['balanced_accuracy'])}  macro-F1 {_fmt(lvl['macro_f1'])}"
        )
    for name, lvl in (report.get("views") or {}).items():
        lines.append(
            f"  {name + ':':<12}{lvl['n']}  accuracy {_fmt(lvl['accuracy'])} ({_fmt_ci(report, lvl)})  "
            f"macro-F1 {_fmt(lvl['macro_f1'])}  (this view alone)"
        )
    cal = report["recording"].get("calibration")
    if cal is not None:
        lines.append(f"calibration ECE {_fmt(cal['ece'])}  Brier {_fmt(cal['brier'])}  NLL {_fmt(cal['nll'])}")
    abstain = report.get("abstain")
    point = abstain.get("at_threshold") if abstain else None
    if abstain and point is not None:
        lines.append(
            f"{'abstaining:':<12}at confidence {_fmt(point['min_confidence'])}: coverage {_fmt(point['coverage'])}  "
            f"accuracy {_fmt(point['accuracy'])}  ({point['n_unknown']} unknown; risk-coverage AURC "
            f"{_fmt(abstain['aurc'])})"
        )
    seg = report.get("segments")
    if seg is not None:
        frame, event = seg["frame"], seg["event"]
        lines.append(
            f"{'segments:':<12}{seg['n_recordings']} recordings  frame accuracy {_fmt(frame['accuracy'])}  "
            f"frame macro-F1 {_fmt(frame['macro_f1'])}  event F1 {_fmt(event['f1'])} "
            f"(onset within {event['onset_collar_s']:g} s)  DCASE event F1 {_fmt(seg['dcase']['event_f1'])}  "
            f"segment F1 {_fmt(seg['dcase']['segment_f1'])} (1 s)"
        )
    if report.get("n_recordings_excluded"):
        lines.append(f"excluded:   {report['n_recordings_excluded']} recordings (unknown label or no windows)")
    return lines


def _abstain_markdown(abstain: AbstainReport | None) -> list[str]:
    if abstain is None:
        return []
    lines = ["", "## Abstaining (risk_coverage.png)", ""]
    lines.append(
        f"Answering the most confident recordings first, the error among the answered against the share answered: "
        f"area under the curve (AURC) {_fmt(abstain['aurc'])} over {abstain['n']} recordings."
    )
    point = abstain.get("at_threshold")
    if point is not None:
        how = " and novelty at most 1" if point["novelty_detector"] else ""
        lines.append(
            f"At top probability {_fmt(point['min_confidence'])}{how}: coverage {_fmt(point['coverage'])}, "
            f"accuracy of the answered {_fmt(point['accuracy'])}, {point['n_unknown']} answered unknown."
        )
    return lines


def _risk_coverage_figure(abstain: AbstainReport, title: str) -> Figure:
    fig = Figure(figsize=(5.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([c["coverage"] for c in abstain["curve"]], [c["risk"] for c in abstain["curve"]], color="C0")
    point = abstain.get("at_threshold")
    if point is not None and point["coverage"] and point["accuracy"] is not None:  # answered some: accuracy is known
        ax.plot([point["coverage"]], [1 - point["accuracy"]], "o", color="C3", label="at the threshold")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("risk (error among the answered)")
    ax.set_title(f"{title}\nrisk-coverage, n={abstain['n']}, AURC {_fmt(abstain['aurc'])}", fontsize=10)
    return fig


def _segment_markdown(seg: SegmentReport | None) -> list[str]:
    if seg is None:
        return []
    frame, event = seg["frame"], seg["event"]
    lines = ["", "## Segments (the model's segments of each annotated recording)", ""]
    lines.append(
        f"{seg['n_recordings']} recordings, windows of {seg['window_s']:g} s every {seg['hop_s']:g} s. Frame level "
        f"({frame['frame_s']:g} s frames, {frame['seconds']:.1f} s annotated): accuracy {_fmt(frame['accuracy'])}, "
        f"macro-F1 {_fmt(frame['macro_f1'])}. Event level (label and onset within {event['onset_collar_s']:g} s): "
        f"precision {_fmt(event['precision'])}, recall {_fmt(event['recall'])}, F1 {_fmt(event['f1'])} "
        f"({event['n_reference']} annotated, {event['n_predicted']} predicted). DCASE definitions: event-based F1 "
        f"{_fmt(seg['dcase']['event_f1'])} (onset within 200 ms, offset within 200 ms or 20 %), segment-based F1 "
        f"{_fmt(seg['dcase']['segment_f1'])} (1 s segments)."
    )
    rows = [[label, _fmt(f1)] for label, f1 in event["per_class_f1"].items()]
    return [*lines, "", *_md_table(["class", "event F1"], rows)]
