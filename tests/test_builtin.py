"""The built-in encoder: shape, dtype, determinism, edge cases, batch consistency, discrimination."""

from __future__ import annotations

import numpy as np
import pytest

from audioclf.builtin import BUILTIN_DIM, BUILTIN_VERSION, SAMPLE_RATE_HZ, builtin_embed, builtin_embed_batch


def _tone(freq_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE_HZ))).astype(np.float32)


def _chirp(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    envelope = np.minimum(1.0, 10 * t) * np.minimum(1.0, 10 * (seconds - t))
    return (0.4 * envelope * np.sin(2 * np.pi * (200 * t + 600 * t**2))).astype(np.float32)


def test_constants() -> None:
    assert isinstance(BUILTIN_VERSION, str) and BUILTIN_VERSION
    assert isinstance(BUILTIN_DIM, int) and 0 < BUILTIN_DIM <= 4000


@pytest.mark.parametrize(
    "wave",
    [
        _tone(300, 1.0),
        _noise(2.0),
        _chirp(0.5),
        np.zeros(int(0.05 * SAMPLE_RATE_HZ), np.float32),  # 0.05 s of digital silence
        np.zeros(SAMPLE_RATE_HZ, np.float32),
        _tone(440, 0.05),  # very short clip
        np.full(800, 1e-9, np.float32),  # near-silence
        np.zeros(0, np.float32),  # empty must not crash either
        np.zeros(10, np.float32),
        _noise(10.0) * 3.0,  # long, clipping-level input
    ],
    ids=["tone", "noise", "chirp", "zeros-50ms", "zeros-1s", "tone-50ms", "tiny", "empty", "10-samp", "10s"],
)
def test_shape_dtype_finite(wave: np.ndarray) -> None:
    emb = builtin_embed(wave)
    assert emb.shape == (BUILTIN_DIM,)
    assert emb.dtype == np.float32
    assert np.all(np.isfinite(emb))


def test_non_finite_input_is_sanitised() -> None:
    wave = _tone(300, 0.3)
    wave[100:200] = np.nan
    wave[300] = np.inf
    assert np.all(np.isfinite(builtin_embed(wave)))


def test_deterministic() -> None:
    wave = _chirp(0.8)
    a = builtin_embed(wave)
    b = builtin_embed(wave.copy())
    np.testing.assert_array_equal(a, b)


def test_batch_equals_per_item() -> None:
    waves = [_tone(300, 0.6), _noise(1.3), np.zeros(800, np.float32), _chirp(0.05), _chirp(2.0)]
    batch = builtin_embed_batch(waves)
    assert batch.shape == (len(waves), BUILTIN_DIM) and batch.dtype == np.float32
    for row, wave in zip(batch, waves, strict=True):
        np.testing.assert_array_equal(row, builtin_embed(wave))
    assert builtin_embed_batch([]).shape == (0, BUILTIN_DIM)


def test_distinguishes_tone_from_noise() -> None:
    tone_a, tone_b = builtin_embed(_tone(300, 1.0)), builtin_embed(_tone(300, 1.0) * 0.9)
    noise_a, noise_b = builtin_embed(_noise(1.0, seed=1)), builtin_embed(_noise(1.0, seed=2))
    within = max(np.linalg.norm(tone_a - tone_b), np.linalg.norm(noise_a - noise_b))
    between = np.linalg.norm(tone_a - noise_a)
    assert between > 3 * within
    assert not np.allclose(builtin_embed(_tone(300, 1.0)), builtin_embed(_tone(1200, 1.0)))
