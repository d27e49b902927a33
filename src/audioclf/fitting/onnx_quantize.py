"""int8 weights for an exported graph, kept only where they give the fp32 graph's answers.

onnxruntime's dynamic quantisation (``quantize_dynamic``: int8 weights of the matrix multiplications,
activations quantised on the fly) makes the graph about four times smaller and often faster, and is not exact.
Whether it is good enough depends on the model and the audio, so it is measured on recordings the user gives:
both graphs label every window of each clip, a clip's answer is the top class of its windows' mean logits
(as ``predict`` does), and the int8 graph is kept only when it agrees with the fp32 one on at least
``AGREEMENT`` of the clips. The agreement, the largest probability difference and the number of clips go into
the card."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.encoders.onnx_encoder import OnnxEncoder
from audioclf.errors import AudioclfError, ModelError
from audioclf.evaluation.calibration import softmax
from audioclf.io.audio import WindowOptions, iter_windows

AGREEMENT = 0.99  # top-1 agreement with the fp32 graph below which int8 weights are refused


@dataclass(frozen=True)
class ReadOptions:
    """How the check recordings are read: the model's windows, at the graph's rate, none shorter than it takes."""

    windows: WindowOptions
    min_samples: int
    rate: int
    n_labels: int


@dataclass(frozen=True)
class Agreement:
    clips: int
    top1: float  # the share of clips whose top class is the same under both graphs
    max_difference: float  # the largest |probability difference| over every clip and label


def quantize_checked(
    fp32: Path, int8: Path, clips: Sequence[Path], reads: ReadOptions, temperature: float
) -> Agreement:
    """``fp32`` quantised into ``int8``, refused (one line) when it changes too many of ``clips``' answers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    require_check(clips)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    exact, small = (probabilities(path, clips, reads, temperature) for path in (fp32, int8))
    agreement = Agreement(
        len(clips), float((exact.argmax(1) == small.argmax(1)).mean()), float(np.abs(exact - small).max())
    )
    if agreement.top1 < AGREEMENT:
        changed = round((1 - agreement.top1) * len(clips))
        raise ModelError(
            f"int8 weights change the answer on {changed} of {len(clips)} check recordings (top-1 agreement "
            f"{agreement.top1:.3f}, below {AGREEMENT}); export without quantising"
        )
    return agreement


def require_check(clips: Sequence[Path]) -> None:
    """One line when there is nothing to check int8 weights on."""
    if not clips:
        raise ModelError(
            "int8 weights are kept only when they give the fp32 graph's answers on recordings you give "
            "(a hundred of yours, say); none were given",
            option="check",
        )


def probabilities(path: Path, clips: Sequence[Path], reads: ReadOptions, temperature: float) -> np.ndarray:
    """[clips, labels]: each clip's probabilities from the graph at ``path``, as ``predict`` makes them."""
    graph = OnnxEncoder(path, reads.n_labels, reads.min_samples, None, reads.rate)
    rows = []
    for clip in clips:
        try:
            windows = [
                w.samples
                for w in iter_windows(clip, reads.windows, rate=reads.rate)
                if len(w.samples) >= reads.min_samples
            ]
        except AudioclfError as exc:
            raise ModelError(f"check recording {exc}") from exc
        if not windows:
            raise ModelError(f"check recording {clip}: shorter than the model's shortest window; give another")
        logits = graph.embed(windows)[:, 0].mean(axis=0)  # a recording's logits: its windows' mean
        rows.append(softmax(logits[None, :] / temperature)[0])
    return np.stack(rows)
