"""A picture of one prediction over time: each class's window probability as a line, the segments shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audioclf.errors import AudioclfError
from audioclf.evaluation.segments import UNKNOWN
from audioclf.fileio import atomic_path
from audioclf.labelling.prediction import Prediction

MAX_LINES = 10  # classes drawn: the most probable anywhere in the recording


def timeline_figure(pred: Prediction) -> Figure:
    scores = pred.scores
    if scores is None:
        raise AudioclfError(f"{pred.source}: no window scores to plot")
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    middles = scores.starts_s + scores.durations_s / 2
    order = np.argsort(middles)
    peak = scores.probs.max(axis=0) if len(scores.probs) else np.zeros(len(scores.labels))
    shown = [int(k) for k in np.argsort(-peak)[:MAX_LINES]]
    colours = {scores.labels[k]: f"C{i}" for i, k in enumerate(shown)}
    for k in shown:
        ax.plot(middles[order], scores.probs[order, k], color=colours[scores.labels[k]], label=scores.labels[k])
    for seg in pred.segments:
        colour = "0.6" if seg.label == UNKNOWN else colours.get(seg.label, "0.8")
        ax.axvspan(seg.start_s, seg.end_s, ymin=0.92, ymax=1.0, color=colour, alpha=0.9, lw=0)
        ax.axvspan(seg.start_s, seg.end_s, color=colour, alpha=0.08, lw=0)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(f"{Path(pred.source).name}: {pred.label} ({pred.probability:.2f})", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def write_timeline_plot(pred: Prediction, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = timeline_figure(pred)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
