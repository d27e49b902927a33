"""What the probe sees: the acoustic embedding, the transcript's sentence embedding, or both.

``acoustic`` (the default) is the encoder's window embeddings. ``transcript`` replaces them by one vector per
recording: the sentence embedding of what is said. ``fused`` trains a probe on each view and averages their
calibrated probabilities (``fusion.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.encoders.loader import Encoder, same_weights
from audioclf.encoders.spec import HF, WHISPER, ModelSpec
from audioclf.errors import AudioclfError, EncoderError, ModelError
from audioclf.fileio import write_csv_atomic, write_json_atomic
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, content_key
from audioclf.io.manifest import Item
from audioclf.speech.features import FeatureMode, Features
from audioclf.speech.text import DEFAULT_TEXT_ENCODER, TfidfEncoder, load_text_encoder
from audioclf.speech.transcribe import (
    EncoderTranscriber,
    Transcriber,
    Transcript,
    TranscriptCache,
    WhisperTranscriber,
    load_ctc,
)

log = logging.getLogger(__name__)

TFIDF_NAME = "tfidf.json"


@dataclass(frozen=True)
class FeatureOptions:
    mode: FeatureMode = FeatureMode.ACOUSTIC
    transcriber: ModelSpec | None = None  # None: the acoustic encoder itself, when it can transcribe
    text_encoder: ModelSpec = DEFAULT_TEXT_ENCODER


def load_transcriber(spec: ModelSpec | None, acoustic: Encoder, windows: WindowOptions | None = None) -> Transcriber:
    from audioclf.encoders.whisper import WhisperEncoder, load_whisper

    if spec is None:
        if isinstance(acoustic, WhisperEncoder):
            return WhisperTranscriber(acoustic)
        if getattr(acoustic, "transcribes", False):  # a CTC encoder: transcripts from the embedding pass
            return EncoderTranscriber(acoustic, windows or WindowOptions())
        if acoustic.spec.kind == HF:
            return load_ctc(acoustic.spec)
        raise EncoderError(
            f"transcript features need a speech recogniser and {acoustic.spec} is not one; "
            "choose a transcriber: whisper:<size or folder> or hf:<a CTC model>",
            option="transcriber",
        )
    return WhisperTranscriber(load_whisper(spec)) if spec.kind == WHISPER else load_ctc(spec)


class Transcripts:
    """What each recording says, through the transcript cache. Ray workers use this half of a ``TextView``
    alone, so that the transcripts are made where the audio is embedded."""

    def __init__(self, spec: ModelSpec | None, acoustic: Encoder, cache_dir: Any, windows: WindowOptions) -> None:
        self.transcriber = load_transcriber(spec, acoustic, windows)
        self._cache = TranscriptCache(cache_dir, self.transcriber.identity, windows.max_duration_s)
        self._max_duration_s = windows.max_duration_s
        # The embedding pass can fill the transcript cache itself when its windows are the transcriber's.
        same_pass = isinstance(self.transcriber, EncoderTranscriber) and windows.hop_s == windows.window_s
        self.same_pass_cache = self._cache if same_pass else None

    def __call__(self, items: Sequence[Item]) -> list[Transcript]:
        out = []
        for item in items:
            key = content_key(item)
            said = self._cache.get(key)
            if said is None:
                try:
                    said = self.transcriber.transcribe(item, self._max_duration_s)
                    self._cache.put(key, said)
                except (AudioclfError, OSError, RuntimeError, ValueError) as exc:  # it decoded once already
                    # Not cached: a transient failure (memory, a file being replaced) is retried by the next run.
                    log.warning("%s: no transcript (%s); its text features are those of empty text", item.where, exc)
                    said = Transcript("")
            out.append(said)
        return out


class TextView:
    """Transcribes (through a cache) and embeds the text of embedded recordings, then builds the features."""

    def __init__(self, options: FeatureOptions, acoustic: Encoder, cache_dir: Any, windows: WindowOptions):
        if options.mode is FeatureMode.ACOUSTIC:
            raise AudioclfError("acoustic features have no text view; use transcript or fused", option="features")
        self.mode = options.mode
        self.said = Transcripts(options.transcriber, acoustic, cache_dir, windows)
        self.transcriber_spec = options.transcriber or acoustic.spec
        self.text = load_text_encoder(options.text_encoder)

    @property
    def transcriber(self) -> Transcriber:
        return self.said.transcriber

    @property
    def same_pass_cache(self) -> TranscriptCache | None:
        return self.said.same_pass_cache

    def transcripts(self, items: Sequence[Item]) -> list[Transcript]:
        return self.said(items)

    def apply(self, embedded: Sequence[tuple[Item, Embedded]]) -> tuple[list[tuple[Item, Embedded]], list[Transcript]]:
        said = self.transcripts([item for item, _ in embedded])
        if isinstance(self.text, TfidfEncoder) and not self.text.fitted:  # training: learn the vocabulary
            self.text.fit([t.text for t in said])
        vectors = self.text.embed([t.text for t in said]) if said else np.zeros((0, self.text.dim), np.float32)
        return [(item, self._features(e, v)) for (item, e), v in zip(embedded, vectors, strict=True)], said

    def _features(self, e: Embedded, text: np.ndarray) -> Embedded:
        """The text view of a recording: one "window" spanning it, holding its sentence embedding."""
        total = float(e.starts_s[-1] + e.durations_s[-1] - e.starts_s[0])
        return Embedded(text[None, None, :], e.starts_s[:1], np.array([total]))

    def card(self) -> Features:
        return Features(self.mode, self.transcriber_spec, self.transcriber.identity, self.text.spec, self.text.identity)


def view_for(
    features: Features, acoustic: Encoder, cache_dir: Any, windows: WindowOptions, model_dir: Path | None
) -> TextView | None:
    """The same text view a model was trained with (None for acoustic models); refuses changed models."""
    if features.mode is FeatureMode.ACOUSTIC:
        return None
    transcriber = features.transcriber if features.transcriber != acoustic.spec else None
    text_encoder = features.text_encoder or DEFAULT_TEXT_ENCODER
    view = TextView(FeatureOptions(features.mode, transcriber, text_encoder), acoustic, cache_dir, windows)
    if isinstance(view.text, TfidfEncoder):
        view.text = load_tfidf(model_dir)
    if not same_weights(view.transcriber.identities, features.transcriber_identity or ""):
        raise ModelError(f"transcriber {features.transcriber} has changed since training; retrain the model")
    if features.text_identity not in view.text.identities:
        raise ModelError(f"text encoder {features.text_encoder} has changed since training; retrain the model")
    return view


def write_transcripts(items: Sequence[Item], said: Sequence[Transcript], path: Path) -> None:
    """transcripts.csv beside a model or report: what each recording says, for a human to check."""
    rows = [
        {"source": i.source, "row": i.where, "label": i.label or "", "language": t.language or "", "transcript": t.text}
        for i, t in zip(items, said, strict=True)
    ]
    write_csv_atomic(path, ["source", "row", "label", "language", "transcript"], rows)


def save_tfidf(view: TextView, out: Path) -> None:
    """The fitted TF-IDF vocabulary beside the model (JSON; written before audioclf.json, like the weights)."""
    if isinstance(view.text, TfidfEncoder):
        write_json_atomic(out / TFIDF_NAME, view.text.state())


def load_tfidf(model_dir: Path | None) -> TfidfEncoder:
    path = (model_dir or Path(".")) / TFIDF_NAME
    try:
        return TfidfEncoder(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: missing or damaged TF-IDF vocabulary ({exc}); retrain the model") from exc
