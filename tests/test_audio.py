from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import FORMATS, tone, write_audio

from audioclf.errors import AudioclfError, DecodeError
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions, iter_windows, load_audio


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE_HZ / len(x))


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono(tmp_path: Path, ext: str) -> None:
    rate = FORMATS[ext][1]
    path = write_audio(tmp_path / f"t.{ext}", tone(440.0, 1.0, rate), rate, channels=2)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / SAMPLE_RATE_HZ - 1.0) < 0.06  # codec priming/padding only
    assert abs(peak_hz(x) - 440.0) < 3.0
    assert 0.2 < np.abs(x).max() < 1.0  # downmix of identical channels keeps the level


def test_downmix_and_resample_from_8k_and_multichannel(tmp_path: Path) -> None:
    x = load_audio(write_audio(tmp_path / "a.wav", tone(300.0, 0.5, 8000), 8000))
    assert len(x) == SAMPLE_RATE_HZ // 2 and abs(peak_hz(x) - 300.0) < 3
    y = load_audio(write_audio(tmp_path / "b.wav", tone(300.0, 0.5, 48_000), 48_000, channels=6))
    assert abs(len(y) - SAMPLE_RATE_HZ // 2) <= 16 and abs(peak_hz(y) - 300.0) < 3


def test_max_duration_stops_early(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.flac", tone(300.0, 3.0, 16_000), 16_000)
    assert len(load_audio(path, max_duration_s=1.25)) == int(1.25 * SAMPLE_RATE_HZ)


def test_windows_cover_long_recording_with_tail_aligned_last_window(tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, int(25.5 * SAMPLE_RATE_HZ)).astype(np.float32)
    path = write_audio(tmp_path / "long.wav", x, SAMPLE_RATE_HZ)
    full = load_audio(path)
    windows = list(iter_windows(path, WindowOptions(window_s=10.0, hop_s=10.0)))
    assert [w.start_s for w in windows] == [0.0, 10.0, 15.5]
    assert all(len(w.samples) == 10 * SAMPLE_RATE_HZ for w in windows)
    for w in windows:  # streamed windows are exact slices of the decoded signal
        start = round(w.start_s * SAMPLE_RATE_HZ)
        np.testing.assert_array_equal(w.samples, full[start : start + len(w.samples)])


def test_overlapping_windows_and_short_clip(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.wav", tone(300.0, 3.0, 16_000), 16_000)
    starts = [w.start_s for w in iter_windows(path, WindowOptions(window_s=1.0, hop_s=0.5))]
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0]
    short = write_audio(tmp_path / "s.wav", tone(300.0, 0.3, 16_000), 16_000)
    (only,) = list(iter_windows(short))
    assert only.start_s == 0.0 and len(only.samples) == int(0.3 * SAMPLE_RATE_HZ)


def test_windows_asked_at_prediction_default_to_the_models() -> None:
    model = WindowOptions(2.0, 1.0, 60.0)
    assert model.asked(None, None, "w/h") is None
    assert model.asked(None, 0.5, "w/h") == WindowOptions(2.0, 0.5, 60.0)
    assert model.asked(4, None, "w/h") == WindowOptions(4.0, 4.0, 60.0)  # no hop: windows that do not overlap
    with pytest.raises(AudioclfError, match=r"^window=2.0, hop=0.001: hop 0.001 s: use 0.05 s"):
        model.asked(None, 0.001, "window={window}, hop={hop}")
    with pytest.raises(AudioclfError, match=r"^--window/--hop: window 0.01 s: use 0.1 s to 86400 s$"):
        model.asked(0.01, None, "--window/--hop")


def test_undecodable_inputs_raise_one_line_decode_errors(tmp_path: Path) -> None:
    cases = {
        "random.wav": np.random.default_rng(1).bytes(4000),
        "empty.mp3": b"",
        "text.ogg": b"hello, I am not audio\n" * 20,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DecodeError) as info:
            load_audio(path)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DecodeError, match=r"missing\.wav"):
        load_audio(tmp_path / "missing.wav")


def test_zero_sample_wav_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    with wave.open(str(path), "wb") as fh:  # a valid header with no frames
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(16_000)
    with pytest.raises(DecodeError, match="no audio samples"):
        load_audio(path)


def test_time_range_selects_a_part_and_keeps_absolute_times(tmp_path: Path) -> None:
    x = np.concatenate([tone(300.0, 2.0), tone(1200.0, 2.0)])
    path = write_audio(tmp_path / "two.flac", x, 16_000)
    windows = list(iter_windows(path, WindowOptions(window_s=1.0, hop_s=1.0), start_s=2.0, end_s=3.5))
    assert [w.start_s for w in windows] == [2.0, 2.5]  # 2.0-3.0 plus a tail window aligned to 3.5
    assert all(abs(peak_hz(w.samples) - 1200.0) < 5 for w in windows)
    with pytest.raises(DecodeError, match="after 9 s"):
        list(iter_windows(path, start_s=9.0))
