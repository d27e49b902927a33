"""What scores an index's windows for ``suggest``: a quick model fitted on the labels so far (single-label:
one class-balanced logistic regression over the labels and "none"; multi-label: one per label), or a trained
model's probe applied to the index's stored vectors (``audioclf train``'s model, to check and correct its
predictions). Each gives ``Probabilities``, which know how sure they are (margin, entropy) for either kind."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audioclf.annotation.labels import Mode, Standing
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Index
from audioclf.encoders.loader import same_weights
from audioclf.evaluation.calibration import sigmoid, softmax
from audioclf.io.label_sets import join_labels
from audioclf.model.card import ModelKind
from audioclf.model.folder import TrainedModel
from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import LAST

log = logging.getLogger(__name__)

NONE_CLASS = "none"  # windows answered "none of them": a class of the single-label quick model
CHUNK = 65_536  # windows scored at once by a trained model


@dataclass(frozen=True)
class Probabilities:
    """Per window and class: a distribution over the classes (single-label), or each class's own probability
    against its threshold (multi-label, ``thresholds`` set)."""

    classes: list[str]
    values: np.ndarray  # [n, n_classes]
    thresholds: np.ndarray | None = None  # multi-label: [n_classes]

    def margin(self) -> np.ndarray:
        """Small = unsure: the gap between the two likeliest classes, or the closest a class comes to its
        threshold."""
        if self.thresholds is not None:
            return np.asarray(np.abs(self.values - self.thresholds).min(axis=1))
        top2 = np.sort(self.values, axis=1)[:, -2:]
        return np.asarray(top2[:, -1] - top2[:, 0] if top2.shape[1] == 2 else top2[:, -1])

    def entropy(self) -> np.ndarray:
        """Large = unsure: of the distribution, or the sum over classes of each yes/no's."""
        p = np.clip(self.values, 1e-12, 1.0)
        if self.thresholds is None:
            return np.asarray(-(p * np.log(p)).sum(axis=1))
        q = np.clip(1.0 - self.values, 1e-12, 1.0)
        return np.asarray(-(p * np.log(p) + q * np.log(q)).sum(axis=1))

    def of(self, label: str) -> np.ndarray | None:
        return self.values[:, self.classes.index(label)] if label in self.classes else None

    def guess(self, k: int) -> tuple[str, float]:
        """Window ``k``'s likeliest class and its probability (multi-label: every class over its threshold,
        ``a;b``, and the least sure of them; the likeliest one when none is over)."""
        row = self.values[k]
        if self.thresholds is None:
            return self.classes[int(np.argmax(row))], float(np.max(row))
        over = np.flatnonzero(row >= self.thresholds)
        if not len(over):
            best = int(np.argmax(row - self.thresholds))
            return self.classes[best], float(row[best])
        return join_labels(self.classes[i] for i in over), float(row[over].min())


class Scorer(Protocol):
    """Scores windows given by their positions in the index's arrays (``Index.exact_arrays``)."""

    classes: list[str]
    source: str  # "quick model" or the trained model's folder

    def probabilities(self, positions: np.ndarray) -> Probabilities: ...


def _regression() -> Any:
    """The quick model's regression (one per label for a multi-label file)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)


class QuickModel:
    """A class-balanced logistic regression on prepared vectors: fitted in about a second."""

    source = "quick model"

    def __init__(self, x: np.ndarray, y: Sequence[str], prepared: np.ndarray | None = None) -> None:
        self._model = _regression().fit(x, list(y))
        self.classes = [str(c) for c in self._model.classes_]
        self._prepared = prepared

    def proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict_proba(x), dtype=np.float64)

    def probabilities(self, positions: np.ndarray) -> Probabilities:
        assert self._prepared is not None, "scoring by position needs the index's prepared vectors"
        return Probabilities(self.classes, self.proba(self._prepared[positions]))


class QuickMultiModel:
    """One class-balanced logistic regression per label (windows with it against windows without it), for a
    multi-label labels file; a label still without positives or without negatives is left out."""

    source = "quick model"

    def __init__(self, x: np.ndarray, targets: dict[str, np.ndarray], prepared: np.ndarray) -> None:
        self.classes = sorted(targets)
        self._models = [_regression().fit(x[t >= 0], t[t >= 0]) for t in (targets[c] for c in self.classes)]
        self._prepared = prepared

    def probabilities(self, positions: np.ndarray) -> Probabilities:
        v = self._prepared[positions]
        values = np.stack([m.predict_proba(v)[:, 1] for m in self._models], axis=1) if len(v) else np.zeros((0, 0))
        return Probabilities(self.classes, values.reshape(len(v), len(self.classes)), np.full(len(self.classes), 0.5))


def answered_windows(ids: np.ndarray, standing: dict[int, Standing]) -> tuple[np.ndarray, list[Standing]]:
    """The positions (in ``ids``) of the windows with an answer a model learns from, and those answers."""
    answered = [s for s in standing.values() if s.answered or s.nots]
    rows = np.searchsorted(ids, [s.window for s in answered]) if answered else np.zeros(0, np.int64)
    keep = [k for k, r in enumerate(rows) if r < len(ids) and ids[r] == answered[k].window]
    return rows[keep], [answered[k] for k in keep]


def fit_quick(
    prepared: np.ndarray, rows: np.ndarray, answered: list[Standing], mode: Mode
) -> QuickMultiModel | QuickModel | None:
    """The quick model of the answered windows (None until there are two classes to tell apart)."""
    if mode is Mode.MULTI:
        targets = label_targets(answered)
        return QuickMultiModel(prepared[rows], targets, prepared) if targets else None
    single = [k for k, s in enumerate(answered) if s.answered]
    y = [next(iter(answered[k].labels)) if answered[k].labels else NONE_CLASS for k in single]
    return QuickModel(prepared[rows[single]], y, prepared) if len(set(y)) >= 2 else None


def label_targets(answered: list[Standing]) -> dict[str, np.ndarray]:
    """Per label: 1 for windows with it, 0 for windows answered without it (another label, none, not it),
    -1 where nothing is known; only labels with both."""
    labels = sorted({label for s in answered for label in s.labels | s.nots})
    out = {}
    for label in labels:
        y = np.array(
            [1 if label in s.labels else 0 if (s.answered or label in s.nots) else -1 for s in answered], np.int64
        )
        if (y == 1).any() and (y == 0).any():
            out[label] = y
    return out


class TrainedScorer:
    """A trained probe applied to the stored vectors of an index built with its encoder and layer: the model's
    own predictions on every window, without reading any audio."""

    def __init__(self, model: TrainedModel, index: Index) -> None:
        self.source = str(model.path or "the trained model")
        stored = probe_on(model, index)
        self._head, self._layer = stored.head, stored.layer
        self._temperature = model.temperature
        multi, thresholds = model.kind is ModelKind.MULTI_LABEL, model.thresholds
        self._thresholds = (np.full(len(model.labels), 0.5) if thresholds is None else thresholds) if multi else None
        self.classes = list(model.labels)
        _, self._raw = index.store.vectors(stored.dim, column=stored.column)  # id order: exact_arrays' positions

    def probabilities(self, positions: np.ndarray) -> Probabilities:
        out = np.zeros((len(positions), len(self.classes)))
        for start in range(0, len(positions), CHUNK):
            chunk = positions[start : start + CHUNK]
            z = (self._raw[chunk] - self._head.mean[self._layer]) / self._head.std[self._layer]
            logits = self._head.classify(z) / self._temperature
            out[start : start + len(chunk)] = softmax(logits) if self._thresholds is None else sigmoid(logits)
        return Probabilities(self.classes, out, self._thresholds)


@dataclass(frozen=True)
class Stored:
    """Which of an index's stored vectors a model's probe reads, and how."""

    head: HeadArrays
    column: str  # the store's "vector" (the audio encoder's) or "text_vector" (each window's transcript's)
    dim: int
    layer: int  # the head's row of z-score statistics for that vector


def probe_on(model: TrainedModel, index: Index) -> Stored:
    """The model's probe, when it reads the one layer of the one encoder whose vectors the index holds, or (a
    transcript model, trained or zero-shot) the sentence embeddings of the index's window transcripts."""
    where = model.path or "the model"
    if model.kind is ModelKind.TRANSCRIPT and model.head is not None:
        return _transcripts_of(model, model.head, index)
    if model.kind not in (ModelKind.PROBE, ModelKind.MULTI_LABEL) or model.head is None:
        raise CorpusError(
            f"{where}: a {model.kind.name.lower().replace('_', '-')} model cannot score an index's stored vectors "
            "(only a probe on the audio encoder or on transcripts can); suggest with the quick model instead"
        )
    card = index.card
    if not same_weights(card.encoder_identity, model.encoder_identity):
        raise CorpusError(
            f"{where}: trained on encoder {model.encoder_spec}, the index holds {card.encoder}'s vectors; build an "
            "index with the model's encoder to check its predictions there"
        )
    choice = model.head.config.layer
    layer = model.head.n_layers - 1 if choice == LAST else int(choice) if choice.isdigit() else None
    if layer != card.layer or model.head.dim != card.dim:
        raise CorpusError(
            f"{where}: its probe reads layer {choice} of {model.head.n_layers}, the index holds layer {card.layer} "
            f"of {card.n_layers}; build an index of that layer (or train with that layer) to use the model here"
        )
    return Stored(model.head, "vector", card.dim, layer)


def _transcripts_of(model: TrainedModel, head: HeadArrays, index: Index) -> Stored:
    where, text = model.path or "the model", index.card.text
    if text is None:
        raise CorpusError(f"{where}: reads what is said; build the index with transcripts to use the model there")
    if text.text_encoder_identity != model.card.features.text_identity or text.dim != head.dim:
        raise CorpusError(
            f"{where}: reads transcripts through {model.card.features.text_encoder}, the index embedded its "
            f"transcripts with {text.text_encoder}; build the index with the model's text encoder"
        )
    return Stored(head, "text_vector", text.dim, 0)
