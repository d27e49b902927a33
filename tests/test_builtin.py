"""The built-in encoder: shape, dtype, determinism, edge cases, batch consistency, discrimination, and that the
general-audio statistics measure what they say."""

from __future__ import annotations

import numpy as np
import pytest

from audioclf.encoders.general_sounds import GENERAL_DIM, general_feature_names
from audioclf.encoders.loader import load_encoder
from audioclf.encoders.mfcc import (
    BUILTIN_DIM,
    BUILTIN_VERSION,
    SAMPLE_RATE_HZ,
    SPEECH_DIM,
    builtin_embed,
    builtin_embed_batch,
    general_features,
    speech_features,
)

NAMES = general_feature_names()


def _tone(freq_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _harmonic(f0_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (0.2 * sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 8))).astype(np.float32)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE_HZ))).astype(np.float32)


def _chirp(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    envelope = np.minimum(1.0, 10 * t) * np.minimum(1.0, 10 * (seconds - t))
    return (0.4 * envelope * np.sin(2 * np.pi * (200 * t + 600 * t**2))).astype(np.float32)


def _clicks(rate_hz: float, seconds: float) -> np.ndarray:
    x = 0.01 * _noise(seconds, seed=3)
    x[:: int(SAMPLE_RATE_HZ / rate_hz)] = 0.9
    return x


def _general(wave: np.ndarray, name: str) -> float:
    return float(general_features(wave)[NAMES.index(name)])


def test_constants() -> None:
    assert isinstance(BUILTIN_VERSION, str) and BUILTIN_VERSION
    assert BUILTIN_VERSION != "mfccstat-1"  # the output changed in mfccstat-2: old cached embeddings must not match
    assert load_encoder("builtin").encoder.identity == f"builtin-{BUILTIN_VERSION}"
    assert SPEECH_DIM == 1102 and len(NAMES) == GENERAL_DIM == len(set(NAMES))
    assert BUILTIN_DIM == SPEECH_DIM + GENERAL_DIM <= 1500


def _square(freq_hz: float, seconds: float) -> np.ndarray:
    return np.sign(_tone(freq_hz, seconds)).astype(np.float32)  # full-scale square wave: clipped audio


@pytest.mark.parametrize(
    "wave",
    [
        _tone(300, 1.0),
        _noise(2.0),
        _chirp(0.5),
        np.zeros(int(0.05 * SAMPLE_RATE_HZ), np.float32),  # 0.05 s of digital silence
        np.zeros(SAMPLE_RATE_HZ, np.float32),
        np.zeros(10 * SAMPLE_RATE_HZ, np.float32),  # 10 s of digital silence
        _tone(440, 0.05),  # very short clip
        _tone(440, 0.09),
        np.full(800, 1e-9, np.float32),  # near-silence
        np.zeros(0, np.float32),  # empty must not crash either
        np.zeros(1, np.float32),
        np.zeros(10, np.float32),
        np.full(SAMPLE_RATE_HZ, 0.5, np.float32),  # DC
        np.full(SAMPLE_RATE_HZ, -1.0, np.float32),  # full-scale DC
        _noise(1.0) + 0.8,  # DC offset plus noise
        _square(200, 2.0),  # clipped, full scale
        np.clip(_noise(10.0) * 30.0, -1.0, 1.0),  # long, hard-clipped noise
        _noise(10.0) * 3.0,  # long, beyond full scale
        np.tile(_chirp(1.0), 60),  # 60 s
    ],
    ids=[
        "tone",
        "noise",
        "chirp",
        "zeros-50ms",
        "zeros-1s",
        "zeros-10s",
        "tone-50ms",
        "tone-90ms",
        "tiny",
        "empty",
        "1-samp",
        "10-samp",
        "dc",
        "dc-full-scale",
        "dc-offset-noise",
        "square",
        "clipped-10s",
        "10s",
        "60s",
    ],
)
def test_shape_dtype_finite(wave: np.ndarray) -> None:
    emb = builtin_embed(wave)
    assert emb.shape == (BUILTIN_DIM,)
    assert emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    np.testing.assert_array_equal(emb[:SPEECH_DIM], speech_features(wave))
    np.testing.assert_array_equal(emb[SPEECH_DIM:], general_features(wave))
    assert np.all(np.abs(emb[SPEECH_DIM:]) < 1e3)  # dB, kHz and ratios: nothing blows up on hostile input


def test_non_finite_input_is_sanitised() -> None:
    wave = _tone(300, 0.3)
    wave[100:200] = np.nan
    wave[300] = np.inf
    wave[400] = -np.inf
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


def test_level_is_kept_by_the_general_part_only() -> None:
    wave = _chirp(1.5) + 0.01 * _noise(1.5)
    gain_db = 20 * np.log10(4.0)
    quiet, loud = builtin_embed(wave), builtin_embed(4.0 * wave)
    # Speech part: the normalised MFCC segment means and the [MFCC, dMFCC] covariance ignore the gain.
    np.testing.assert_allclose(loud[:260], quiet[:260], atol=1e-3)
    np.testing.assert_allclose(loud[300:1082], quiet[300:1082], atol=1e-3)
    # General part: band levels and the frame level move by the gain; the spectral shape does not.
    general_q, general_l = quiet[SPEECH_DIM:], loud[SPEECH_DIM:]
    for name in ("band32_05_mean_db", "band32_20_mean_db", "level_db_mean", "level_db_p50", "level_db_max"):
        i = NAMES.index(name)
        assert general_l[i] - general_q[i] == pytest.approx(gain_db, abs=0.05), name
    for name in ("centroid_khz_mean", "rolloff_khz_mean", "flatness_db_mean", "zcr_mean", "harmonicity_mean"):
        i = NAMES.index(name)
        assert general_l[i] == pytest.approx(general_q[i], abs=1e-3), name


def test_leading_silence_is_not_trimmed_from_the_general_part() -> None:
    wave = _chirp(1.0)
    padded = np.concatenate([np.zeros(SAMPLE_RATE_HZ, np.float32), wave])
    # The speech part trims the silence (same active region); the general part sees it.
    np.testing.assert_allclose(speech_features(padded)[:260], speech_features(wave)[:260], atol=0.05)
    assert _general(padded, "level_db_p10") < _general(wave, "level_db_p10") - 40
    assert _general(padded, "band32_10_mean_db") < _general(wave, "band32_10_mean_db") - 20


def test_spectral_shape_and_harmonicity() -> None:
    low, high = _tone(300, 1.0), _tone(3000, 1.0)
    assert _general(low, "centroid_khz_mean") == pytest.approx(0.3, abs=0.05)
    assert _general(high, "centroid_khz_mean") == pytest.approx(3.0, abs=0.05)
    assert _general(high, "rolloff_khz_mean") > 2.5 > 0.5 > _general(low, "rolloff_khz_mean")
    noise = _noise(1.0)
    assert _general(noise, "flatness_db_mean") > -3.0 > -20.0 > _general(low, "flatness_db_mean")
    assert _general(noise, "zcr_mean") == pytest.approx(0.5, abs=0.03)
    assert _general(low, "zcr_mean") == pytest.approx(2 * 300 / SAMPLE_RATE_HZ, abs=0.005)
    for f0 in (160.0, 220.0, 600.0):
        assert _general(_harmonic(f0, 1.0), "harmonicity_mean") > 0.9, f0
    assert _general(noise, "harmonicity_mean") < 0.4
    assert _general(noise, "level_db_mean") == pytest.approx(10 * np.log10(0.09), abs=0.5)


@pytest.mark.parametrize(("rate_hz", "band"), [(3.0, "2-4hz"), (12.0, "8-16hz")])
def test_modulation_spectrum_peaks_at_the_modulation_rate(rate_hz: float, band: str) -> None:
    t = np.arange(4 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    wave = (_noise(4.0) * (1.0 + 0.9 * np.sin(2 * np.pi * rate_hz * t))).astype(np.float32)
    feats = general_features(wave)
    level = {b: feats[NAMES.index(f"modulation_level_{b}")] for b in ("0.5-2hz", "2-4hz", "4-8hz", "8-16hz")}
    assert max(level, key=lambda b: level[b]) == band
    steady = general_features(_noise(4.0))
    assert feats[NAMES.index(f"modulation_level_{band}")] > steady[NAMES.index(f"modulation_level_{band}")] + 3


def test_rhythm_finds_a_regular_beat() -> None:
    regular = _clicks(1.25, 6.0)  # a click every 0.8 s
    rng = np.random.default_rng(5)
    irregular = 0.01 * _noise(6.0, seed=3)
    irregular[rng.choice(len(irregular), 9, replace=False)] = 0.9
    assert _general(regular, "rhythm_0.5-1s") > 0.8
    assert _general(irregular, "rhythm_0.5-1s") < 0.5
