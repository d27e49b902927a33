"""Built-in audio encoder: a fixed, download-free embedding for speech and for sound in general.

One front end (``spectrogram.py``: 25 ms / 10 ms STFT, 64 mel bands) feeds two parts, concatenated:

1. **Speech features** (``speech_features``, 1,102 values, the whole of the encoder up to ``mfccstat-1``):
   the mel power is clamped ``DYNAMIC_RANGE_DB`` below the clip's loudest bin and turned into 20 MFCCs;
   leading/trailing frames more than ``TRIM_TOP_DB`` below the loudest frame are trimmed; the remaining
   "active region" is cepstral mean/variance normalised (removes channel and much of the speaker/recording
   colouring) and the removed mean and log-std are kept. Pooled: means over K equal segments (temporal
   shape, each K in ``SEGMENT_COUNTS``), the covariance of [MFCC, delta-MFCC] (upper triangle) with the
   log delta variances, the log active duration and the active fraction.
2. **General-audio statistics** (``general_features.py``, 133 values): over the whole window, untrimmed
   and un-normalised, band levels in dB (means of 32 bands; std and mean absolute change of 16), spectral
   shape, zero-crossing rate, harmonicity and level per frame summarised over time, the modulation spectrum
   of 8 band envelopes and the level (0.5-32 Hz), and onset-rhythm periodicity. These keep what part 1
   normalises away (level, channel colour, background, silences) and describe texture and rhythm, which
   matter for environmental sound and music.

Nothing depends on the clip being speech or having a particular length; the output is deterministic and
finite for any input (silence, DC, clipping, NaN/inf samples, an empty clip).
"""

from __future__ import annotations

import numpy as np

from audioclf.encoders.general_sounds import GENERAL_DIM, general_statistics
from audioclf.encoders.spectrogram import (
    ABS_POWER_FLOOR,
    HOP_LENGTH_SAMPLES,
    N_MELS,
    SAMPLE_RATE_HZ,
    Spectrogram,
    mel_power,
    spectrogram,
)

BUILTIN_VERSION = "mfccstat-2"  # bump on any change to the output: cached embeddings are keyed on it

N_MFCC = 20
DYNAMIC_RANGE_DB = 50.0  # mel power is clamped this far below the clip's loudest mel bin
TRIM_TOP_DB = 40.0  # leading/trailing frames this far below the loudest frame are trimmed
DELTA_HALF_WIDTH_FRAMES = 2
SEGMENT_COUNTS = (5, 8)
CMVN_VAR_FLOOR = 1e-4  # variance floor for cepstral normalisation (std >= 0.01)
LOG_EPS = 1e-6

_N_COV = 2 * N_MFCC
_N_SEG_FEATS = sum(SEGMENT_COUNTS) * N_MFCC
_N_COV_FEATS = _N_COV * (_N_COV - 1) // 2 + N_MFCC
SPEECH_DIM = _N_SEG_FEATS + 2 * N_MFCC + _N_COV_FEATS + 2
BUILTIN_DIM = SPEECH_DIM + GENERAL_DIM

__all__ = [
    "BUILTIN_DIM",
    "BUILTIN_VERSION",
    "SAMPLE_RATE_HZ",
    "SPEECH_DIM",
    "builtin_embed",
    "builtin_embed_batch",
    "general_features",
    "mel_power",
    "speech_features",
]


def _dct_matrix() -> np.ndarray:
    """Orthonormal DCT-II basis, shape [N_MFCC, N_MELS]."""
    k = np.arange(N_MFCC)[:, None]
    n = np.arange(N_MELS)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * N_MELS)) * np.sqrt(2.0 / N_MELS)
    basis[0] /= np.sqrt(2.0)
    return basis


_DCT = _dct_matrix()
_COV_ROWS, _COV_COLS = np.triu_indices(_N_COV, 1)


def _active_bounds(frame_log_energy: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the frames between the first and last one within TRIM_TOP_DB of the loudest."""
    threshold = frame_log_energy.max() - TRIM_TOP_DB / 10.0 * np.log(10.0)
    idx = np.flatnonzero(frame_log_energy >= threshold)
    return int(idx[0]), int(idx[-1]) + 1


def _delta(feats: np.ndarray) -> np.ndarray:
    """Regression delta over +-DELTA_HALF_WIDTH_FRAMES frames (edges replicated)."""
    n = DELTA_HALF_WIDTH_FRAMES
    frames = len(feats)
    padded = np.pad(feats, ((n, n), (0, 0)), mode="edge")
    num = sum(k * (padded[n + k : n + k + frames] - padded[n - k : n - k + frames]) for k in range(1, n + 1))
    return num / (2.0 * sum(k * k for k in range(1, n + 1)))


def _segment_means(feats: np.ndarray, n_segments: int) -> np.ndarray:
    """Means over ``n_segments`` equal, contiguous parts (a part is >= 1 frame even for short input)."""
    frames = len(feats)
    out = np.empty((n_segments, feats.shape[1]))
    for k in range(n_segments):
        start = (k * frames) // n_segments
        stop = max(start + 1, ((k + 1) * frames) // n_segments)
        out[k] = feats[start:stop].mean(axis=0)
    return out.ravel()


def _mfcc_active(mel: np.ndarray) -> np.ndarray:
    """MFCCs [frames, N_MFCC] of the active region of a mel power spectrogram."""
    floor = max(float(mel.max()) * 10.0 ** (-DYNAMIC_RANGE_DB / 10.0), ABS_POWER_FLOOR)
    log_mel = np.log(np.maximum(mel, floor))
    start, stop = _active_bounds(np.log(mel.sum(axis=1) + ABS_POWER_FLOOR))
    return log_mel[start:stop] @ _DCT.T


def _speech_part(spec: Spectrogram) -> np.ndarray:
    """The speech features (float64 [SPEECH_DIM]) of one front-end output."""
    mfcc = _mfcc_active(spec.mel)
    mean = mfcc.mean(axis=0)
    std = np.sqrt(mfcc.var(axis=0) + CMVN_VAR_FLOOR)
    norm = (mfcc - mean) / std
    joint = np.hstack([norm, _delta(norm)])
    cov = joint.T @ joint / len(joint)
    active_s = len(mfcc) * HOP_LENGTH_SAMPLES / SAMPLE_RATE_HZ
    parts = [_segment_means(norm, k) for k in SEGMENT_COUNTS]
    parts += [
        mean,
        np.log(std),
        cov[_COV_ROWS, _COV_COLS],
        np.log(np.diag(cov)[N_MFCC:] + LOG_EPS),
        np.array([np.log(active_s), len(mfcc) / spec.frames]),
    ]
    return np.concatenate(parts)


def _finite32(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def speech_features(wave: np.ndarray) -> np.ndarray:
    """The speech part alone, float32 [SPEECH_DIM]: identical to the whole encoder up to ``mfccstat-1``."""
    return _finite32(_speech_part(spectrogram(wave)))


def general_features(wave: np.ndarray) -> np.ndarray:
    """The general-audio part alone, float32 [GENERAL_DIM] (see ``general_features.py``)."""
    return _finite32(general_statistics(spectrogram(wave)))


def builtin_embed(wave: np.ndarray) -> np.ndarray:
    """Embed one 1-D float32 mono clip at 16 kHz; returns float32 [BUILTIN_DIM]: speech part, general part."""
    spec = spectrogram(wave)
    return _finite32(np.concatenate([_speech_part(spec), general_statistics(spec)]))


def builtin_embed_batch(waves: list[np.ndarray]) -> np.ndarray:
    """Embed several clips; row i equals ``builtin_embed(waves[i])``. Returns float32 [n, BUILTIN_DIM]."""
    out = np.zeros((len(waves), BUILTIN_DIM), dtype=np.float32)
    for i, wave in enumerate(waves):
        out[i] = builtin_embed(wave)
    return out
