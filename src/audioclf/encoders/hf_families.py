"""How each transformers audio family takes its input, and which of its output positions hold audio.

- **Waveform models** (wav2vec2, HuBERT, WavLM, Data2VecAudio, UniSpeech(-SAT), SEW(-D), wav2vec2-conformer)
  read raw 16 kHz samples of any length through a convolutional front end.
- **Filterbank-frame models** (wav2vec2-BERT) read stacked log-mel frames of any length, with a frame mask.
- **Whisper** reads exactly 30 s of log-mel (``chunk_length`` of its feature extractor): shorter audio is padded
  with silence, as Whisper was trained. Longer windows are refused, never silently cut.
- **AST** (Audio Spectrogram Transformer) reads exactly ``max_length`` filterbank frames (10.24 s for the
  AudioSet checkpoints), cut into overlapping 16x16 patches; it too is padded, and longer windows are refused.

Every family's embedding of a layer is the mean over the positions that hold audio, never the padding. The
feature extractor always runs outside autocast, in float32 (Whisper's computes its STFT in torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from audioclf.encoders.spec import ModelSpec
from audioclf.errors import EncoderError, first_line
from audioclf.io.audio import FRAME_HOP_SAMPLES, SAMPLE_RATE_HZ

AST_FRAME_SAMPLES = 400  # Kaldi filterbank: 25 ms frames every FRAME_HOP_SAMPLES (10 ms)
WAVEFORM_INPUT = "input_values"


class AudioFamily:
    """One family's input preparation and audio mask. Subclasses override what differs."""

    name = "audio"
    fixed_input_s: float | None = None  # the model reads exactly this much audio per input
    exact_batches = False  # every input is padded on its own: a batch of any lengths equals one clip at a time
    min_samples = 1

    def __init__(self, model: Any, extractor: Any) -> None:
        self.config = model.config
        self.extractor = extractor
        self._model = model

    def inputs(self, waves: Sequence[np.ndarray], *, mask: bool = True) -> dict[str, torch.Tensor]:
        """The feature extractor's tensors for ``waves`` (16 kHz float32), padded to the longest."""
        batch = self.extractor(
            list(waves), sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt", padding=True, return_attention_mask=mask
        )
        return dict(batch)

    def audio_mask(self, waves: Sequence[np.ndarray], inputs: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
        """``[batch, positions]`` bool: which output positions of a layer hold audio (not padding)."""
        lengths = torch.tensor([len(w) for w in waves])
        fn = getattr(self._model, "_get_feat_extract_output_lengths", None)
        mask = inputs.get("attention_mask")
        if mask is not None and mask.shape[1] == positions and WAVEFORM_INPUT not in inputs:
            frames = mask.sum(1).long()  # frame-level features: the extractor's mask is the output's
        elif fn is not None and WAVEFORM_INPUT in inputs:
            frames = fn(lengths).long()
            full = int(fn(torch.tensor([inputs[WAVEFORM_INPUT].shape[1]]))[0])
            if full != positions:  # a layer at another frame rate (SEW's squeezed transformer layers)
                frames = torch.ceil(frames * positions / max(1, full)).long()
        else:  # proportional to the samples: exact for one clip, close for padded batches
            frames = torch.ceil(positions * lengths / lengths.max()).long()
        return _prefix_mask(frames.clamp(min=1, max=positions), positions)


class WaveformFamily(AudioFamily):
    name = "waveform"

    def __init__(self, model: Any, extractor: Any) -> None:
        super().__init__(model, extractor)
        self.name = self.config.model_type
        self.min_samples = conv_receptive_field(self.config)


class WhisperFamily(AudioFamily):
    """Whisper's encoder: log-mel padded to the fixed 30 s input; the conv front end halves the frame rate."""

    name = "Whisper"
    exact_batches = True

    def __init__(self, model: Any, extractor: Any) -> None:
        super().__init__(model, extractor)
        self.hop = int(extractor.hop_length)
        self.frames = int(extractor.nb_max_frames)
        expected = int(self.config.max_source_positions) * 2
        if self.frames != expected:
            raise EncoderError(
                f"Whisper: the feature extractor pads to {self.frames} mel frames but the model expects {expected};"
                " use the preprocessor_config.json saved with this model"
            )
        self.fixed_input_s = int(extractor.n_samples) / SAMPLE_RATE_HZ

    def inputs(self, waves: Sequence[np.ndarray], *, mask: bool = True) -> dict[str, torch.Tensor]:
        batch = self.extractor(
            list(waves), sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt", padding="max_length", truncation=True
        )
        return {"input_features": batch["input_features"]}

    def audio_mask(self, waves: Sequence[np.ndarray], inputs: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
        mel = torch.tensor([min(self.frames, math.ceil(len(w) / self.hop)) for w in waves])
        frames = torch.ceil(mel * positions / self.frames).long()  # 3000 mel frames -> 1500 encoder states
        return _prefix_mask(frames.clamp(min=1, max=positions), positions)


class ASTFamily(AudioFamily):
    """AST: a fixed number of filterbank frames, cut into frequency x time patches after two summary tokens."""

    name = "AST"
    exact_batches = True
    min_samples = AST_FRAME_SAMPLES

    def __init__(self, model: Any, extractor: Any) -> None:
        super().__init__(model, extractor)
        c = self.config
        if int(extractor.max_length) != int(c.max_length) or int(extractor.num_mel_bins) != int(c.num_mel_bins):
            raise EncoderError(
                f"AST: the feature extractor makes {extractor.max_length} x {extractor.num_mel_bins} filterbanks but"
                f" the model expects {c.max_length} x {c.num_mel_bins}; use the preprocessor_config.json saved with it"
            )
        self.fixed_input_s = int(c.max_length) * FRAME_HOP_SAMPLES / SAMPLE_RATE_HZ
        self.freq_patches = (int(c.num_mel_bins) - int(c.patch_size)) // int(c.frequency_stride) + 1
        self.time_patches = (int(c.max_length) - int(c.patch_size)) // int(c.time_stride) + 1

    def inputs(self, waves: Sequence[np.ndarray], *, mask: bool = True) -> dict[str, torch.Tensor]:
        batch = self.extractor(list(waves), sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt")
        return {"input_values": batch["input_values"]}

    def audio_mask(self, waves: Sequence[np.ndarray], inputs: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
        """The patches whose first frame holds audio (the two summary tokens are not audio positions)."""
        frames = torch.tensor([max(1, 1 + (len(w) - AST_FRAME_SAMPLES) // FRAME_HOP_SAMPLES) for w in waves])
        patch_start = torch.arange(self.time_patches) * int(self.config.time_stride)
        in_audio = patch_start[None, :] < frames[:, None]  # [batch, time patches]
        grid = in_audio[:, None, :].expand(-1, self.freq_patches, -1).reshape(len(waves), -1)  # frequency-major
        summary = torch.zeros(len(waves), positions - grid.shape[1], dtype=torch.bool)
        return torch.cat([summary, grid], dim=1)


def check_sample_rate(model: Any, extractor: Any) -> None:
    """Audio is decoded at 16 kHz; a model built for another rate (CLAP reads 48 kHz) is refused, not fed
    resampled audio it was never trained on."""
    rate = int(getattr(extractor, "sampling_rate", SAMPLE_RATE_HZ) or SAMPLE_RATE_HZ)
    if rate != SAMPLE_RATE_HZ:
        name = getattr(model.config, "model_type", "") or type(model).__name__
        raise EncoderError(
            f"{name} reads {rate / 1000:g} kHz audio, and audioclf decodes at {SAMPLE_RATE_HZ // 1000} kHz; use a"
            " checkpoint trained on 16 kHz audio (wav2vec2, HuBERT, WavLM, Whisper, AST, …)"
        )


def family_of(model: Any, extractor: Any) -> AudioFamily:
    """The family of a loaded transformers audio model; one clear error for one this tool cannot feed."""
    check_sample_rate(model, extractor)
    model_type = str(getattr(model.config, "model_type", ""))
    if model_type == "whisper":
        return WhisperFamily(model, extractor)
    if model_type == "audio-spectrogram-transformer":
        return ASTFamily(model, extractor)
    names = list(getattr(extractor, "model_input_names", []))
    if names[:1] == [WAVEFORM_INPUT]:
        return WaveformFamily(model, extractor)
    if names[:1] == ["input_features"] and "attention_mask" in names:
        family = AudioFamily(model, extractor)
        family.name = model_type
        return family
    raise EncoderError(
        f"{model_type or type(model).__name__}: not an audio family this tool can feed (it takes"
        f" {names or 'unknown inputs'}); use wav2vec2, HuBERT, WavLM, Data2VecAudio, UniSpeech, SEW, wav2vec2-BERT,"
        " Whisper or AST checkpoints"
    )


def model_failure(family: AudioFamily, spec: ModelSpec, exc: Exception) -> EncoderError:
    """What torch or transformers raised inside a family's extractor or model, as one line saying what to do."""
    first = first_line(exc)
    return EncoderError(
        f"the {family.name} model failed ({type(exc).__name__}: {first}); check that {spec} is a complete"
        " checkpoint saved with its preprocessor_config.json"
    )


def pool_layers(hidden: Sequence[torch.Tensor], mask_for: Any) -> torch.Tensor:
    """``[batch, layers, dim]``: each layer's mean over its positions that hold audio (``mask_for(positions)``)."""
    pooled, masks = [], {}  # layers at one frame rate share one mask
    for h in hidden:
        if h.shape[1] not in masks:
            masks[h.shape[1]] = mask_for(h.shape[1]).to(h.device, torch.float32)
        mask = masks[h.shape[1]]
        pooled.append((h.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0))
    return torch.stack(pooled, dim=1)


def conv_receptive_field(config: Any) -> int:
    """The shortest input that gives one output frame through a convolutional front end (400 for wav2vec2)."""
    length = 1
    kernels, strides = getattr(config, "conv_kernel", ()), getattr(config, "conv_stride", ())
    for kernel, stride in reversed(list(zip(kernels, strides, strict=False))):
        length = (length - 1) * int(stride) + int(kernel)
    return length


def _prefix_mask(lengths: torch.Tensor, positions: int) -> torch.Tensor:
    return torch.arange(positions)[None, :] < lengths[:, None]
