"""Transcripts: what is said, from Whisper (faster-whisper) or any CTC speech recogniser, cached like embeddings.

A transcript is per recording. Whisper decodes its own 30 s windows (the whole recording is streamed to it);
a ``*ForCTC`` transformers model is decoded greedily (argmax, merge repeats, drop blanks) window by window.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audioclf.encoders.hub import Identities
from audioclf.encoders.spec import ModelSpec
from audioclf.errors import EncoderError
from audioclf.fileio import sharded_path, write_json_atomic
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions, iter_windows, load_audio
from audioclf.io.manifest import Item

log = logging.getLogger(__name__)

CTC_WINDOW = WindowOptions(window_s=20.0, hop_s=20.0)  # CTC output is local: plain cuts lose at most a word


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None = None  # Whisper's detected language
    language_probability: float | None = None


class Transcriber(Protocol):
    identity: str
    identities: Identities  # the identity, then the older form that earlier versions saved with a model

    def transcribe(self, item: Item, max_duration_s: float | None) -> Transcript: ...


class WhisperTranscriber:
    """faster-whisper's own transcription: greedy at temperature 0 only (its default falls back to sampling at
    higher temperatures, so the same clip read twice could say different things), no VAD, no conditioning on
    earlier text: reproducible."""

    def __init__(self, encoder: Any) -> None:
        self._model = encoder._model
        self.identity = f"{encoder.model_identity}-transcribe-2"
        self.identities = Identities(self.identity)

    def transcribe(self, item: Item, max_duration_s: float | None) -> Transcript:
        wave = load_audio(item.file, max_duration_s, item.start_s or 0.0, item.end_s)
        segments, info = self._model.transcribe(
            wave,
            beam_size=1,
            temperature=0.0,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text, info.language, float(info.language_probability))


class CTCTranscriber:
    """Greedy CTC decoding of a transformers ``*ForCTC`` model with its tokenizer."""

    def __init__(self, spec: ModelSpec, extractor: Any, tokenizer: Any, model: Any, identities: Identities) -> None:
        self.spec = spec
        self._extractor = extractor
        self._tokenizer = tokenizer
        self._model = model.eval()
        self.identities = identities.tagged(suffix="-ctc-greedy-1")
        self.identity = self.identities.current

    def transcribe(self, item: Item, max_duration_s: float | None) -> Transcript:
        windows = WindowOptions(CTC_WINDOW.window_s, CTC_WINDOW.hop_s, max_duration_s)
        start = item.start_s or 0.0
        parts = [self.decode([w.samples])[0] for w in iter_windows(item.file, windows, start, item.end_s)]
        return Transcript(" ".join(p for p in parts if p))

    def decode(self, waves: list[np.ndarray]) -> list[str]:
        import torch

        inputs = self._extractor(waves, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = self._model(**inputs).logits
        return [t.strip() for t in self._tokenizer.batch_decode(logits.argmax(-1))]


class EncoderTranscriber:
    """The acoustic encoder itself, when it is a CTC model with a tokenizer: transcripts come out of the same
    forward pass as the embeddings (``embed_items(transcripts=…)``); this class computes the ones that pass did
    not (embeddings read from the cache), over the same non-overlapping windows, so both give the same text."""

    def __init__(self, encoder: Any, windows: WindowOptions) -> None:
        self._encoder = encoder
        self._window_s = windows.window_s
        self.identities = encoder.identities.tagged(suffix=f"-ctc-greedy-1-{windows.window_s:g}s")
        self.identity = self.identities.current

    def transcribe(self, item: Item, max_duration_s: float | None) -> Transcript:
        windows = WindowOptions(self._window_s, self._window_s, max_duration_s)
        waves = [w.samples for w in iter_windows(item.file, windows, item.start_s or 0.0, item.end_s)]
        texts: list[str] = []
        for start in range(0, len(waves), 16):
            self._encoder.embed(waves[start : start + 16])
            texts += self._encoder.last_texts or []
        return Transcript(" ".join(t for t in texts if t))


def load_ctc(model: ModelSpec) -> CTCTranscriber:
    """``hf:<id or folder>`` of a model with a CTC head and a tokenizer (e.g. facebook/wav2vec2-base-960h)."""
    from transformers import AutoModelForCTC

    from audioclf.encoders.hub import fingerprints, load_hf, pretrained, tokenizer_of

    def load(source: str, local_only: bool) -> CTCTranscriber:
        tokenizer = tokenizer_of(source, local_only)
        if tokenizer is None:
            raise EncoderError(f"{model}: has no tokenizer (vocab.json) to turn CTC output into text")
        extractor, weights = pretrained(AutoModelForCTC, source, local_only, model, "a CTC speech recogniser")
        identities = fingerprints(weights, extractor, lambda: (weights, extractor))  # weights kept as loaded
        return CTCTranscriber(model, extractor, tokenizer, weights, identities)

    return load_hf(model, load)


class TranscriptCache:
    """One JSON file per (audio content, transcriber) under ``root/transcripts``; atomic, human-readable."""

    def __init__(self, root: Path, transcriber_identity: str, max_duration_s: float | None) -> None:
        self.root = Path(root) / "transcripts"
        self._salt = f"{transcriber_identity}|{max_duration_s}"

    def path_for(self, audio_key: str) -> Path:
        key = hashlib.sha256(f"{self._salt}:{audio_key}".encode()).hexdigest()
        return sharded_path(self.root, key, ".json")

    def get(self, audio_key: str) -> Transcript | None:
        try:
            return Transcript(**json.loads(self.path_for(audio_key).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, audio_key: str, transcript: Transcript) -> None:
        write_json_atomic(self.path_for(audio_key), asdict(transcript))
