"""A window's spectrogram as a PNG, drawn on the server with numpy and zlib (no plotting library, nothing for
the page to load from elsewhere): a log-power STFT up to half the decoding rate, pooled to at most
``MAX_WIDTH`` x ``HEIGHT`` pixels, the context around the window dimmed."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from audioclf.io.audio import SAMPLE_RATE_HZ

N_FFT = 512  # 32 ms at 16 kHz
HOP = 160  # 10 ms: 100 columns a second before pooling
HEIGHT = 128  # pixels: the 257 frequency bins pooled in pairs
MAX_WIDTH = 800
DYNAMIC_RANGE_DB = 80.0
CONTEXT_DIM = 0.45  # brightness of the context either side of the window
# viridis at five stops: dark blue (quiet) to yellow (loud)
STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def spectrogram_png(samples: np.ndarray, window_from_s: float, window_to_s: float) -> bytes:
    """The PNG of ``samples`` (mono at ``SAMPLE_RATE_HZ``), columns outside ``[window_from_s, window_to_s)`` dim."""
    db = _log_power(np.asarray(samples, dtype=np.float32))
    level = np.clip((db - (db.max() - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    rgb = _colour(level[::-1])  # low frequencies at the bottom
    n_columns = rgb.shape[1]
    seconds = len(samples) / SAMPLE_RATE_HZ
    at = (np.arange(n_columns) + 0.5) / n_columns * seconds
    outside = (at < window_from_s) | (at >= window_to_s)
    rgb[:, outside] = (rgb[:, outside] * CONTEXT_DIM).astype(np.uint8)
    return png_bytes(rgb)


def _log_power(samples: np.ndarray) -> np.ndarray:
    """[HEIGHT, width] decibels."""
    if len(samples) < N_FFT:
        samples = np.pad(samples, (0, N_FFT - len(samples)))
    n_frames = 1 + (len(samples) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1)) ** 2  # [frames, 257]
    power = power[:, : 2 * HEIGHT].reshape(n_frames, HEIGHT, 2).mean(axis=2)  # the top bin (Nyquist) left out
    pool = -(-n_frames // MAX_WIDTH)  # columns per pixel, so the width stays within MAX_WIDTH
    width = -(-n_frames // pool)
    padded = np.pad(power, ((0, width * pool - n_frames), (0, 0)), mode="edge")
    pooled = padded.reshape(width, pool, HEIGHT).mean(axis=1)
    return 10.0 * np.log10(pooled.T + 1e-10)


def _colour(level: np.ndarray) -> np.ndarray:
    """[h, w] in 0..1 to [h, w, 3] uint8 along ``STOPS``."""
    x = level * (len(STOPS) - 1)
    low = np.clip(np.floor(x).astype(int), 0, len(STOPS) - 2)
    frac = (x - low)[..., None]
    return np.round(STOPS[low] * (1.0 - frac) + STOPS[low + 1] * frac).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` ([h, w, 3] uint8)."""
    height, width, _ = rgb.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
