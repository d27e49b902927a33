"""CLAP (LAION's contrastive language-audio models, transformers' ``ClapModel``) through ``hf:``: audio and text
in one space. As an encoder it gives each window's projected audio embedding, of unit length (one "layer"),
for probes and the index; its text tower embeds label prompts for zero-shot models (``fitting.zero_shot``).

CLAP reads 48 kHz audio (its feature extractor's ``sampling_rate``): windows are decoded at that rate
(``sample_rate``), never resampled from 16 kHz, which would lose everything above 8 kHz. A window is at most the
extractor's ``max_length_s`` (10 s for the LAION checkpoints): shorter ones are repeat-padded by the extractor
as CLAP was trained; longer ones are refused rather than randomly cropped (``rand_trunc``) or fused. A fused
checkpoint's extractor marks one input of each batch as "longer" at random when none is (a training device):
here none is, so every window is embedded as if alone, whatever else is in its batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from audioclf.encoders.hub import Identities, fingerprints
from audioclf.encoders.spec import ModelSpec
from audioclf.errors import EncoderError, first_line

BATCH = 16
TEMPLATE = "This is a sound of {}."  # LAION CLAP's zero-shot prompt


class ClapEncoder:
    """The audio tower of a ``ClapModel`` (and its text tower, when the folder has a tokenizer)."""

    n_layers = 1
    min_samples = 1
    native_window_s: float | None
    max_window_s: float | None

    def __init__(self, spec: ModelSpec, model: Any, extractor: Any, tokenizer: Any) -> None:
        import torch

        self.spec = spec
        self._torch = torch
        self._model = model.eval()
        self._extractor = extractor
        self._tokenizer = tokenizer
        self.sample_rate = int(extractor.sampling_rate)
        self.dim = int(model.config.projection_dim)
        self.native_window_s = self.max_window_s = float(extractor.max_length_s)
        self.logit_scale = float(model.logit_scale_a.detach().exp())  # audio-to-text logits: this times the cosine
        self.identities: Identities = fingerprints(model, extractor, None)
        self.identity = self.identities.current

    @property
    def reads_text(self) -> bool:
        return self._tokenizer is not None

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        """[windows, 1, projection_dim]: each window's audio embedding, of unit length."""
        out = np.zeros((len(windows), 1, self.dim), dtype=np.float32)
        for start in range(0, len(windows), BATCH):
            batch = [np.asarray(w, dtype=np.float32) for w in windows[start : start + BATCH]]
            inputs = self._extractor(batch, sampling_rate=self.sample_rate, return_tensors="pt")
            if "is_longer" in inputs:  # no window is longer than the input; a fused model's extractor marks one
                inputs["is_longer"] = self._torch.zeros_like(inputs["is_longer"])  # at random: batch-dependent
            with self._torch.inference_mode():
                found = self._model.get_audio_features(**inputs)
            out[start : start + len(batch), 0] = _unit(found)
        return out

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """[texts, projection_dim]: the text tower's embeddings, of unit length."""
        if self._tokenizer is None:
            raise EncoderError(f"{self.spec}: this CLAP folder has no tokenizer, so it cannot read prompts")
        inputs = self._tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with self._torch.inference_mode():
            return _unit(self._model.get_text_features(**inputs))


def _unit(found: Any) -> np.ndarray:
    """The projection (a tensor, or transformers 5's output object holding it), normalised to unit length."""
    x = (found if hasattr(found, "norm") else found.pooler_output).float()
    return np.asarray((x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)).numpy(), dtype=np.float32)


def load_clap(spec: ModelSpec, source: str, local_only: bool) -> ClapEncoder:
    """A ``ClapModel`` folder or hub id with its processor (its tokenizer is optional: audio-only use)."""
    from transformers import AutoFeatureExtractor, AutoTokenizer, ClapModel

    try:
        extractor = AutoFeatureExtractor.from_pretrained(source, local_files_only=local_only)
        model = ClapModel.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EncoderError(f"{spec}: cannot load the CLAP model ({first_line(exc)})") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError, TypeError):
        tokenizer = None
    return ClapEncoder(spec, model, extractor, tokenizer)
