"""What an ONNX export computes, as torch modules traced by ``torch.onnx.export``: one window of raw 16 kHz
samples in, the model's logits out (before its temperature), with every step audioclf takes between them:

- the family's front end: zero-mean unit-variance normalisation for the waveform families whose feature
  extractor normalises; Whisper's log-mel spectrogram (the window padded with silence to the 30 s input, a Hann
  STFT as a convolution with a fixed Fourier basis, the extractor's own mel filters, log10, the 8 dB floor below
  the loudest value, the (x + 4) / 4 scaling), computed as transformers' feature extractor does;
- the encoder's hidden states, each averaged over the positions that hold audio (all of them for a waveform
  window; for Whisper the positions of the window before its padding, ``hf_families.WhisperFamily``);
- the probe: z-score, the layer choice and the linear layers (``model.probe.HeadArrays``), or a fine-tuned
  classifier's own head.

A window is one input of any length (a batch of one: wav2vec2-base's group norm has no padding mask)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import LAST, MEAN, WEIGHTED


class ProbeGraph(nn.Module):
    """``HeadArrays.logits`` in torch: [1, layers, dim] -> [1, classes]."""

    mean: torch.Tensor
    std: torch.Tensor
    mix: torch.Tensor

    def __init__(self, head: HeadArrays) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(np.asarray(head.mean, np.float32)))
        self.register_buffer("std", torch.from_numpy(np.asarray(head.std, np.float32)))
        layer = head.config.layer
        mix = np.zeros(head.n_layers, np.float32)
        if layer == WEIGHTED:
            w = np.exp(head.layer_logits - head.layer_logits.max())
            mix = (w / w.sum()).astype(np.float32)
        elif layer == MEAN:
            mix[:] = 1.0 / head.n_layers
        else:
            mix[-1 if layer == LAST else int(layer)] = 1.0
        self.register_buffer("mix", torch.from_numpy(mix))
        self.linears = nn.ModuleList()
        for weight, bias in head.linears:
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight.data = torch.from_numpy(np.asarray(weight, np.float32))
            linear.bias.data = torch.from_numpy(np.asarray(bias, np.float32))
            self.linears.append(linear)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        z = (layers - self.mean) / self.std
        h = (z * self.mix[None, :, None]).sum(1)
        for i, linear in enumerate(self.linears):
            h = linear(h)
            if i < len(self.linears) - 1:
                h = torch.relu(h)
        return h


class WaveformGraph(nn.Module):
    """A waveform family's encoder (wav2vec2, HuBERT, WavLM, …) and the probe, or a fine-tuned classifier."""

    def __init__(self, model: Any, normalize: bool, head: ProbeGraph | None) -> None:
        super().__init__()
        self.model, self.normalize, self.head = model, normalize, head

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio
        if self.normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-7)
        if self.head is None:  # a fine-tuned classifier: its own pooling and head
            return self.model(x).logits
        hidden = self.model(x, output_hidden_states=True).hidden_states
        return self.head(torch.stack([h.mean(1) for h in hidden], 1))


class MelPower(nn.Module):
    """[1, samples] -> [1, mels, frames]: a centred (reflect-padded) Hann STFT as a convolution with a fixed
    Fourier basis, its power, through a mel filter bank ([bins, mels], as the feature extractor holds it)."""

    basis: torch.Tensor
    mel: torch.Tensor

    def __init__(self, n_fft: int, hop: int, filters: np.ndarray) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("basis", _fourier_basis(n_fft))  # torch.hann_window's (periodic) Hann
        self.register_buffer("mel", torch.from_numpy(np.asarray(filters, np.float32).T.copy()))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        centred = nn.functional.pad(samples[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spectrum = nn.functional.conv1d(centred, self.basis, stride=self.hop)  # [1, 2 x bins, frames]
        bins = spectrum.shape[1] // 2
        return torch.matmul(self.mel, spectrum[:, :bins] ** 2 + spectrum[:, bins:] ** 2)


class WhisperGraph(nn.Module):
    """Whisper's log-mel front end, its encoder, the mean over the window's own positions, and the probe."""

    def __init__(self, encoder: Any, extractor: Any, head: ProbeGraph) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.n_samples, self.frames = int(extractor.n_samples), int(extractor.nb_max_frames)
        self.front = MelPower(int(extractor.n_fft), int(extractor.hop_length), extractor.mel_filters)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[1, n] -> [1, mels, frames]: ``WhisperFeatureExtractor`` on the window padded to its 30 s input."""
        padded = nn.functional.pad(audio, (0, self.n_samples - audio.shape[1]))
        log_spec = torch.clamp(self.front(padded)[..., :-1], min=1e-10).log10()  # its last frame is dropped
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log_spec + 4.0) / 4.0

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.log_mel(audio), output_hidden_states=True).hidden_states
        positions = hidden[0].shape[1]
        samples = torch.ones_like(audio[0]).sum()  # the window's length, as a tensor the graph computes with
        mel_frames = torch.clamp(torch.ceil(samples / self.front.hop), max=self.frames)
        audio_positions = torch.clamp(torch.ceil(mel_frames * positions / self.frames), min=1.0)
        mask = (torch.arange(positions, device=audio.device) < audio_positions).float()[None, :, None]
        pooled = [(h * mask).sum(1) / mask.sum(1) for h in hidden]
        return self.head(torch.stack(pooled, 1))


class ClapGraph(nn.Module):
    """An unfused CLAP's audio tower on one window of 48 kHz samples: the extractor's repeat-padding to its input
    length, its power mel spectrogram in dB (the Slaney filters), the projection, unit length, and the probe. (A
    fused checkpoint's fusion branch is chosen by the data: ``onnx_export`` refuses it.)"""

    def __init__(self, model: Any, extractor: Any, head: ProbeGraph) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.n_samples = int(extractor.nb_max_samples)
        hop, filters = int(extractor.hop_length), extractor.mel_filters_slaney  # the unfused ("rand_trunc") bank
        self.front = MelPower(int(extractor.fft_window_size), hop, filters)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n = torch.ones_like(audio[0], dtype=torch.int64).sum()  # the window's length, as a tensor in the graph
        position = torch.arange(self.n_samples, device=audio.device)
        repeated = audio[0][torch.remainder(position, n)]  # ``repeatpad``: whole copies of the window, then silence
        filled = self.n_samples - torch.remainder(torch.full_like(n, self.n_samples), n)  # whole copies' samples
        padded = torch.where(position < filled, repeated, torch.zeros_like(repeated))
        db = 10.0 * torch.log10(torch.clamp(self.front(padded[None, :]), min=1e-10))  # [1, mels, frames]
        features = db.transpose(1, 2)[:, None]  # [1, 1, frames, mels]
        longer = torch.zeros(1, 1, dtype=torch.bool, device=audio.device)
        found = self.model.get_audio_features(input_features=features, is_longer=longer)
        embedding = found if isinstance(found, torch.Tensor) else found.pooler_output
        unit = embedding / embedding.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return self.head(unit[:, None, :])


def _fourier_basis(n_fft: int) -> torch.Tensor:
    """[2 x (n_fft / 2 + 1), 1, n_fft]: the real and imaginary DFT rows times a periodic Hann window."""
    bins = n_fft // 2 + 1
    t = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * t / n_fft)
    angle = 2 * np.pi * np.outer(np.arange(bins), t) / n_fft
    basis = np.concatenate([np.cos(angle), -np.sin(angle)]) * window
    return torch.from_numpy(basis.astype(np.float32))[:, None, :]
