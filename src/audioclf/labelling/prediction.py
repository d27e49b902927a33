"""What a prediction is: per-recording label and top-k, the best guess behind an ``unknown``, per-window
timelines and labelled segments, built from a model's window logits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from audioclf.errors import AudioclfError
from audioclf.evaluation.calibration import sigmoid, softmax
from audioclf.evaluation.pooling import recording_max
from audioclf.evaluation.risk_coverage import checked_min_confidence
from audioclf.evaluation.segments import UNKNOWN, Segment, SegmentOptions, label_segments, segments_of
from audioclf.evaluation.window_logits import WindowLogits, recording_logits
from audioclf.io.audio import WindowOptions
from audioclf.io.label_sets import join_labels
from audioclf.speech.transcribe import Transcript


@dataclass(frozen=True)
class PredictOptions:
    """How inputs are labelled. ``windows``: other windows than the model's (e.g. a finer hop for segments);
    ``segments``: turn window scores into labelled time segments; ``min_confidence``: below it the answer is
    ``unknown`` (the best guess is kept)."""

    top_k: int = 3
    timeline: bool = False
    segments: SegmentOptions | None = None
    windows: WindowOptions | None = None
    min_confidence: float | None = None
    # segments asked of inputs all shorter than one window: an error (False: each is one segment, with a warning)
    refuse_unsegmentable: bool = True

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise AudioclfError(f"top_k {self.top_k}: ask for at least 1 label", option="top_k")
        checked_min_confidence(self.min_confidence)


def chosen_confidence(value: float | str | None, model_threshold: Callable[[], float]) -> float | None:
    """A minimum confidence as given: None or "" (never abstain), "auto" (the model's own threshold), or a
    probability (checked by PredictOptions)."""
    if value is None or value == "":
        return None
    if value == "auto":
        return model_threshold()
    try:
        return float(value)
    except ValueError:
        raise AudioclfError(
            f"minimum confidence {value!r}: use a probability from 0 to 1, or auto", option="min_confidence"
        ) from None


@dataclass(frozen=True)
class WindowLabel:
    start_s: float
    end_s: float
    label: str
    probability: float


@dataclass(frozen=True)
class WindowScores:
    """Every class's probability per window of one recording, for plots."""

    labels: list[str]
    starts_s: np.ndarray
    durations_s: np.ndarray
    probs: np.ndarray  # windows x classes
    novelty: np.ndarray | None = None  # per window, over the model's threshold (None: no novelty detector)


@dataclass(frozen=True)
class Prediction:
    source: str
    label: str  # the most likely class, or ``unknown`` when its probability is below the minimum confidence
    top: list[tuple[str, float]]  # (label, probability), most likely first
    timeline: list[WindowLabel]
    transcript: Transcript | None = None  # models trained on transcript or fused features
    segments: list[Segment] = field(default_factory=list)
    scores: WindowScores | None = None
    novelty: float | None = None  # distance to the training audio over the model's threshold (> 1: novel)
    unknown_reason: str | None = None  # "low confidence" or "unlike the training audio" when label is unknown
    labels: tuple[str, ...] | None = None  # multi-label models: every label at or above its threshold

    @property
    def probability(self) -> float:
        """The probability of the most likely class (also when ``label`` is ``unknown``)."""
        return self.top[0][1]

    @property
    def best_guess(self) -> str:
        return self.top[0][0]

    def as_dict(self) -> dict[str, object]:
        said = self.transcript
        spoken: dict[str, object] = {}
        if said is not None:
            spoken = {
                "transcript": said.text,
                "language": said.language,
                "language_probability": said.language_probability,
            }
        return {
            "source": self.source,
            "label": self.label,
            "probability": self.probability,
            **({"best_guess": self.best_guess, "unknown_reason": self.unknown_reason} if self.label == UNKNOWN else {}),
            **({"novelty": round(self.novelty, 4)} if self.novelty is not None else {}),
            **({"labels": list(self.labels)} if self.labels is not None else {}),
            "top": [{"label": label, "probability": p} for label, p in self.top],
            **({"timeline": [w.__dict__ for w in self.timeline]} if self.timeline else {}),
            **({"segments": [s.as_dict() for s in self.segments]} if self.segments else {}),
            **spoken,
        }

    @property
    def ok(self) -> bool:
        """True: a prediction (``Failed.ok`` is False), for telling the two apart in a list of results."""
        return True


@dataclass(frozen=True)
class Failed:
    """An input that got no prediction (not found, not decodable, not downloadable, …), in its place among the
    results: ``error`` is one line saying what was wrong with it and what to do."""

    source: str
    error: str

    @property
    def ok(self) -> bool:
        return False

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "error": self.error}


Result = Prediction | Failed  # one input's answer


def predictions_for(
    preds: WindowLogits, durations: Sequence[np.ndarray], options: PredictOptions, hop_s: float
) -> list[Prediction]:
    """Per-recording labels from window logits (mean logits), with the timelines and segments asked for."""
    if preds.thresholds is not None:
        return _multilabel_predictions(preds, durations, options, hop_s, preds.thresholds)
    rec_probs = softmax(recording_logits(preds))
    win_probs = softmax(preds.window_logits)
    out = []
    for i, source in enumerate(preds.recordings):
        order = np.argsort(-rec_probs[i])[: options.top_k]
        top = [(preds.labels[j], float(rec_probs[i, j])) for j in order]
        rows = np.flatnonzero(preds.window_recording == i)
        novel = preds.window_novelty[rows] if preds.window_novelty is not None else None
        scores = WindowScores(
            list(preds.labels), preds.window_starts_s[rows], np.asarray(durations[i]), win_probs[rows], novel
        )
        novelty = float(preds.recording_novelty[i]) if preds.recording_novelty is not None else None
        reason = _unknown_reason(top[0][1], novelty, options.min_confidence)
        out.append(
            Prediction(
                source,
                top[0][0] if reason is None else UNKNOWN,
                top,
                _timeline(scores) if options.timeline else [],
                preds.transcripts[i] if preds.transcripts is not None else None,
                _segments(scores, hop_s, options),
                scores,
                novelty,
                reason,
            )
        )
    return out


def _unknown_reason(probability: float, novelty: float | None, min_confidence: float | None) -> str | None:
    """Why the answer is ``unknown`` (None: it is not). Abstaining is asked for by a minimum confidence; the
    novelty detector, where the model has one, then also refuses audio unlike any it was trained on."""
    if min_confidence is None:
        return None
    if novelty is not None and novelty > 1.0:
        return "unlike the training audio"
    return "low confidence" if probability < min_confidence else None


def _timeline(scores: WindowScores) -> list[WindowLabel]:
    best = scores.probs.argmax(axis=1)
    return [
        WindowLabel(float(start), float(start + duration), scores.labels[k], float(scores.probs[row, k]))
        for row, (start, duration, k) in enumerate(zip(scores.starts_s, scores.durations_s, best, strict=True))
    ]


def _segments(scores: WindowScores, hop_s: float, options: PredictOptions) -> list[Segment]:
    if options.segments is None or not len(scores.probs):
        return []
    return segments_of(
        scores.starts_s,
        scores.durations_s,
        scores.probs,
        scores.labels,
        hop_s,
        options.segments,
        options.min_confidence,
        scores.novelty,
    )


def _multilabel_predictions(
    preds: WindowLogits, durations: Sequence[np.ndarray], options: PredictOptions, hop_s: float, thresholds: np.ndarray
) -> list[Prediction]:
    """Sigmoid per label; a recording has a label when one of its windows does (max over windows)."""
    win_probs = sigmoid(preds.window_logits)
    rec_probs = recording_max(win_probs, preds.window_recording, len(preds.recordings))
    out = []
    for i, source in enumerate(preds.recordings):
        rows = np.flatnonzero(preds.window_recording == i)
        probs = rec_probs[i]
        order = np.argsort(-probs)
        present = tuple(preds.labels[k] for k in order if probs[k] >= thresholds[k])
        top = [(preds.labels[k], float(probs[k])) for k in order[: options.top_k]]
        scores = WindowScores(
            list(preds.labels), preds.window_starts_s[rows], np.asarray(durations[i]), win_probs[rows]
        )
        segments = []
        if options.segments is not None and len(rows):
            segments = label_segments(
                scores.starts_s, scores.durations_s, scores.probs, scores.labels, hop_s, thresholds, options.segments
            )
        timeline = _timeline(scores) if options.timeline else []
        out.append(Prediction(source, join_labels(present), top, timeline, None, segments, scores, labels=present))
    return out
