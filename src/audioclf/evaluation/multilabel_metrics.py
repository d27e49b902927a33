"""Scores of a multi-label model: per-label average precision and F1 at the model's thresholds, mAP,
micro/macro-F1 and exact-match accuracy (scikit-learn), and the report files' text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from audioclf.evaluation.report_types import MULTI_LABEL, LabelScores, MultiLabelReport


def average_precisions(probs: np.ndarray, truth: np.ndarray) -> list[float | None]:
    """Per label, the average precision of ``probs`` against ``truth`` ([n_recordings, n_labels]; None: the label
    has no positive recording)."""
    return [
        float(average_precision_score(truth[:, k], probs[:, k])) if int(truth[:, k].sum()) else None
        for k in range(truth.shape[1])
    ]


def mean_average_precision(probs: np.ndarray, truth: np.ndarray) -> float | None:
    """mAP: the macro mean of the per-label average precisions, over the labels with a positive recording (None:
    no label has one)."""
    return _mean_of_known(average_precisions(probs, truth))


def _mean_of_known(aps: list[float | None]) -> float | None:
    known = [ap for ap in aps if ap is not None]
    return float(np.mean(known)) if known else None


def multilabel_report(
    probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, labels: Sequence[str]
) -> MultiLabelReport:
    """``probs`` and ``truth`` are [n_recordings, n_labels] (sigmoid probabilities, 0/1)."""
    predicted = probs >= thresholds[None, :]
    aps = average_precisions(probs, truth)
    per_label: dict[str, LabelScores] = {}
    for k, label in enumerate(labels):
        positives = int(truth[:, k].sum())
        per_label[label] = {
            "average_precision": aps[k],
            "f1": float(f1_score(truth[:, k], predicted[:, k], zero_division=0)),
            "precision": float(precision_score(truth[:, k], predicted[:, k], zero_division=0)),
            "recall": float(recall_score(truth[:, k], predicted[:, k], zero_division=0)),
            "threshold": float(thresholds[k]),
            "support": positives,
        }
    return {
        "task": MULTI_LABEL,
        "labels": list(labels),
        "n_recordings": len(truth),
        "map": _mean_of_known(aps),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "exact_match": float((predicted == truth.astype(bool)).all(1).mean()) if len(truth) else None,
        "per_label": per_label,
    }


def multilabel_summary_lines(report: MultiLabelReport) -> list[str]:
    return [
        f"{'recordings:':<12}{report['n_recordings']}  mAP {_fmt(report['map'])}  micro-F1 {_fmt(report['micro_f1'])}"
        f"  macro-F1 {_fmt(report['macro_f1'])}  exact match {_fmt(report['exact_match'])} (multi-label)"
    ]


def multilabel_markdown(report: MultiLabelReport, title: str) -> str:
    about = (
        f"{report['n_recordings']} labelled recordings, {len(report['labels'])} labels (multi-label: a recording "
        "has a label when any of its windows reaches the label's threshold)."
    )
    lines = [f"# {title}", "", about, ""]
    lines += multilabel_summary_lines(report)
    lines += ["", "| label | AP | F1 | precision | recall | threshold | support |", "|---|---|---|---|---|---|---|"]
    for label, m in report["per_label"].items():
        cells = [m["average_precision"], m["f1"], m["precision"], m["recall"], m["threshold"]]
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in cells) + f" | {m['support']} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
