"""A trained model applied to new files: labels, top-k probabilities and per-window timelines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audioclf.encoders.loader import LogitsEncoder, bf16_supported, load_encoder, precision_for, same_weights
from audioclf.errors import ModelError
from audioclf.evaluation.metrics import Predictions, recording_logits
from audioclf.extraction.embed import EmbedResult, embed_items
from audioclf.io.cache import Embedded, EmbeddingCache
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, audio_files, check_url, looks_like_url
from audioclf.speech.text_features import view_for
from audioclf.speech.transcribe import Transcript
from audioclf.training.model_dir import TrainedModel
from audioclf.training.probe import predict_logits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowLabel:
    start_s: float
    end_s: float
    label: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    source: str
    label: str
    top: list[tuple[str, float]]  # (label, probability), most likely first
    timeline: list[WindowLabel]
    transcript: Transcript | None = None  # models trained on transcript or fused features

    @property
    def probability(self) -> float:
        """The probability of ``label``, the most likely class."""
        return self.top[0][1]

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
            "top": [{"label": label, "probability": p} for label, p in self.top],
            **({"timeline": [w.__dict__ for w in self.timeline]} if self.timeline else {}),
            **spoken,
        }


def apply_model(
    model: TrainedModel,
    items: Sequence[Item],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None = None,
    progress: bool = True,
) -> tuple[Predictions, EmbedResult]:
    """Embed ``items`` with the model's own encoder and settings (through the cache) and run the head."""
    if model.finetuned:
        assert model.path is not None
        return _apply_finetuned(model, model.path, items, cache_dir, fetch=fetch, progress=progress)
    encoder = load_encoder(model.encoder_spec, precision_for(model.encoder_identity)).encoder
    if not same_weights(encoder.identity, model.encoder_identity):
        raise ModelError(
            f"encoder {model.encoder_spec} now has different weights ({encoder.identity}) than at training "
            f"({model.encoder_identity}); retrain the model or restore the original encoder"
        )
    view = view_for(model.meta, encoder, cache_dir, model.windows, model.path)
    cache = EmbeddingCache(cache_dir, encoder.identity, model.windows)
    same_pass = view.same_pass_cache if view is not None else None
    result = embed_items(items, encoder, cache, model.windows, fetch=fetch, progress=progress, transcripts=same_pass)
    head = model.head
    assert head is not None
    t = model.temperature  # 1 for a fused model: its views carry their own temperatures
    if view is None:
        return _predictions(model, result.embedded, lambda x: predict_logits(head, x) / t), result
    text, said = view.apply(result.embedded)
    if model.fusion is None:  # transcript features
        return _predictions(model, text, lambda x: predict_logits(head, x) / t, said), result
    fusion = model.fusion
    text_x = np.concatenate([e.embeddings for _, e in text]) if text else np.zeros((0, 1, view.text.dim), np.float32)
    preds = _predictions(model, result.embedded, lambda x: predict_logits(head, x), said)
    views = fusion.views(preds.window_logits, preds.window_recording, text_x)
    return replace(preds, window_logits=views["fused"], views=views), result


def _apply_finetuned(
    model: TrainedModel,
    folder: Path,
    items: Sequence[Item],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None,
    progress: bool,
) -> tuple[Predictions, EmbedResult]:
    encoder = LogitsEncoder(folder, bf16=bf16_supported())
    if encoder.dim != len(model.labels):
        raise ModelError(f"{folder}: config.json has {encoder.dim} labels, audioclf.json {len(model.labels)}")
    cache = EmbeddingCache(cache_dir, encoder.identity, model.windows)
    result = embed_items(items, encoder, cache, model.windows, fetch=fetch, progress=progress)
    return _predictions(model, result.embedded, lambda x: x[:, 0, :]), result


def _predictions(
    model: TrainedModel,
    embedded: Sequence[tuple[Item, Embedded]],
    logits_of: Callable[[np.ndarray], np.ndarray],
    said: list[Transcript] | None = None,
) -> Predictions:
    index = {label: i for i, label in enumerate(model.labels)}
    x = np.concatenate([e.embeddings for _, e in embedded]) if embedded else np.zeros((0, 1, 1), np.float32)
    return Predictions(
        labels=list(model.labels),
        window_logits=logits_of(x) if embedded else np.zeros((0, len(model.labels)), np.float32),
        window_recording=np.concatenate([np.full(len(e.embeddings), i) for i, (_, e) in enumerate(embedded)])
        if embedded
        else np.zeros(0, dtype=np.int64),
        window_starts_s=np.concatenate([e.starts_s for _, e in embedded]) if embedded else np.zeros(0),
        recordings=[item.source for item, _ in embedded],
        recording_true=np.array([index.get(item.label, -1) if item.label else -1 for item, _ in embedded]),
        recording_groups=[item.group for item, _ in embedded],
        transcripts=said,
    )


def predictions_for(
    preds: Predictions, durations: Sequence[np.ndarray], *, top_k: int = 3, timeline: bool = False
) -> list[Prediction]:
    """Per-recording labels from window logits (mean logits), with optional per-window timelines."""
    rec_probs = torch.softmax(torch.as_tensor(recording_logits(preds)), dim=1).numpy()
    win_probs = torch.softmax(torch.as_tensor(preds.window_logits), dim=1).numpy()
    out = []
    for i, source in enumerate(preds.recordings):
        order = np.argsort(-rec_probs[i])[: max(1, top_k)]
        top = [(preds.labels[j], float(rec_probs[i, j])) for j in order]
        windows: list[WindowLabel] = []
        if timeline:
            rows = np.flatnonzero(preds.window_recording == i)
            for row, duration in zip(rows, durations[i], strict=True):
                best = int(win_probs[row].argmax())
                start = float(preds.window_starts_s[row])
                windows.append(
                    WindowLabel(start, start + float(duration), preds.labels[best], float(win_probs[row, best]))
                )
        said = preds.transcripts[i] if preds.transcripts is not None else None
        out.append(Prediction(source, top[0][0], top, windows, said))
    return out


def predict_inputs(
    model: TrainedModel,
    inputs: Sequence[str],
    cache_dir: Path,
    *,
    fetch: FetchOptions | None = None,
    top_k: int = 3,
    timeline: bool = False,
    progress: bool = True,
) -> tuple[list[Prediction], EmbedResult]:
    """Files, folders (searched recursively for audio) and http(s) URLs -> one Prediction per readable input."""
    items = []
    for text in inputs:
        if looks_like_url(text):
            url = check_url(text)
            items.append(Item(url, None, None, "", text))
            continue
        for f in audio_files([Path(text)]):
            items.append(Item(str(f.resolve()), None, None, str(f.resolve()), str(f)))
    if not items:
        raise ModelError("no audio files found in the given paths; pass audio files, folders or URLs")
    preds, result = apply_model(model, items, cache_dir, fetch=fetch, progress=progress)
    durations = [e.durations_s for _, e in result.embedded]
    per_window = (model.meta.get("features") or {}).get("mode", "acoustic") != "transcript"
    if timeline and not per_window:
        log.warning("no timeline: a transcript-features model labels whole recordings")
    return predictions_for(preds, durations, top_k=top_k, timeline=timeline and per_window), result
