"""What each window says: its transcript (the existing Whisper / CTC transcribers, through the transcript cache)
and the sentence embedding of that transcript, for ``search --text``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from audioclf.corpus.card import CorpusError, TextSide
from audioclf.encoders.loader import Encoder
from audioclf.encoders.spec import ModelSpec
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded
from audioclf.io.manifest import Item
from audioclf.speech.text import DEFAULT_TEXT_ENCODER, SentenceEncoder, TfidfEncoder, load_text_encoder
from audioclf.speech.text_features import Transcripts


class WindowTexts:
    def __init__(
        self,
        transcriber: ModelSpec | None,
        acoustic: Encoder,
        cache_dir: object,
        windows: WindowOptions,
        text_encoder: ModelSpec = DEFAULT_TEXT_ENCODER,
    ) -> None:
        self.said = Transcripts(transcriber, acoustic, cache_dir, windows)
        self.transcriber_spec = transcriber or acoustic.spec
        self.text = sentence_encoder(text_encoder)

    def side(self) -> TextSide:
        return TextSide(
            str(self.transcriber_spec),
            self.said.transcriber.identity,
            str(self.text.spec),
            self.text.identity,
            self.text.dim,
        )

    def of(self, item: Item, emb: Embedded) -> tuple[list[str], np.ndarray]:
        """Each window's transcript and its unit sentence vector (zeros where nothing was said)."""
        spans = [
            replace(item, start_s=float(s), end_s=float(s + d))
            for s, d in zip(emb.starts_s, emb.durations_s, strict=True)
        ]
        texts = [t.text.strip() for t in self.said(spans)]
        return texts, embed_texts(self.text, texts)


def sentence_encoder(spec: ModelSpec) -> SentenceEncoder:
    encoder = load_text_encoder(spec)
    if isinstance(encoder, TfidfEncoder):
        raise CorpusError(
            "tfidf cannot embed an index's transcripts (it learns its vocabulary from labelled training text); "
            "use a sentence encoder such as minilm",
            option="text_encoder",
        )
    return encoder


def embed_texts(encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    vectors = encoder.embed(texts) if texts else np.zeros((0, encoder.dim), np.float32)
    empty = np.array([not t for t in texts], dtype=bool)
    if empty.any():
        vectors[empty] = 0.0
    return vectors
