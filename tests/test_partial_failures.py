"""Partial failures: every input gets an answer (a prediction or its failure, in input order), from the command
line and the Python API; waveforms are checked and scaled at the boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

import audioclf
from audioclf.cli.main import main


@pytest.fixture(scope="module")
def model(tone_model: tuple[Path, Path]) -> audioclf.Model:
    folder, cache = tone_model
    return audioclf.load(folder, cache_dir=cache)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "bad.mp3"
    path.write_bytes(b"\x00" * 100)
    return path


def test_a_missing_path_is_one_failed_input_of_predict(
    tone_model: tuple[Path, Path], tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tone_model
    good, missing = tone_dataset.parent / "low_3_0.wav", tmp_path / "nope.wav"
    base = ["predict", "--model", str(folder), "--cache-dir", str(cache), "--quiet"]
    assert main([*base, str(missing), str(good)]) == 3  # 3: some inputs were labelled, not all
    out, err = capsys.readouterr()
    assert "low_3_0.wav\tlow" in out and "nope.wav" not in out and "nope.wav" in err
    assert main([*base, str(missing), str(good), "--json"]) == 3
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(o["source"]).name for o in lines] == ["low_3_0.wav", "nope.wav"]
    assert lines[0]["label"] == "low" and "no such file" in lines[1]["error"] and set(lines[1]) == {"source", "error"}
    assert main([*base, str(missing)]) == 2  # nothing labelled: an error, as when every input is undecodable
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines()[-1].startswith("error: ") and "nope.wav" in err


def test_the_api_answers_every_input_in_order(
    model: audioclf.Model, tone_dataset: Path, bad: Path, tmp_path: Path
) -> None:
    low, high = tone_dataset.parent / "low_3_0.wav", tone_dataset.parent / "high_3_1.wav"
    missing = tmp_path / "nope.wav"
    results = model.predict([high, missing, bad, low])
    assert [type(r).__name__ for r in results] == ["Prediction", "Failed", "Failed", "Prediction"]
    first, gone, broken, last = results
    assert isinstance(first, audioclf.Prediction) and first.label == "high"
    assert isinstance(last, audioclf.Prediction) and last.label == "low"
    assert isinstance(gone, audioclf.Failed) and Path(gone.source).name == "nope.wav"
    assert "no such file" in gone.error and not gone.ok and first.ok
    assert isinstance(broken, audioclf.Failed) and broken.source == str(bad.resolve())
    assert "cannot decode" in broken.error and "\n" not in broken.error
    assert broken.as_dict() == {"source": broken.source, "error": broken.error}
    failed = model.predict([missing])
    assert len(failed) == 1 and isinstance(failed[0], audioclf.Failed)


def test_the_library_prints_nothing_for_failed_inputs(tone_model: tuple[Path, Path], bad: Path) -> None:
    folder, cache = tone_model
    script = (
        "import sys, audioclf\n"
        "m = audioclf.load(sys.argv[1], cache_dir=sys.argv[2])\n"
        "print(len(m.predict([sys.argv[3]])))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(cache), str(bad)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1\n" and proc.stderr == ""  # its Failed is returned; the warning goes to logging


@pytest.mark.parametrize("rate", [0, -1, 10**9, 999, 44_100.5, True, "16000", float("nan")])
def test_a_wrong_sampling_rate_is_one_line_naming_the_option(model: audioclf.Model, rate: object) -> None:
    with pytest.raises(audioclf.AudioclfError, match="sampling_rate") as caught:
        model.predict(tone(660.0, 0.6), sampling_rate=rate)  # type: ignore[arg-type]
    assert caught.value.option == "sampling_rate" and "\n" not in str(caught.value)


def test_integer_samples_are_scaled_by_their_range(model: audioclf.Model, tmp_path: Path) -> None:
    from scipy.io import wavfile

    clip = tone(220.0, 0.6, noise=0.05, seed=7)
    pcm = np.round(clip * 32767).astype(np.int16)
    wavfile.write(tmp_path / "clip.wav", 16_000, pcm)
    rate, read = wavfile.read(tmp_path / "clip.wav")
    assert read.dtype == np.int16
    (as_int,) = model.predict(read, sampling_rate=rate)
    (as_float,) = model.predict(read.astype(np.float32) / 32768, sampling_rate=rate)
    (as_file,) = model.predict(tmp_path / "clip.wav")
    assert isinstance(as_int, audioclf.Prediction) and isinstance(as_float, audioclf.Prediction)
    assert isinstance(as_file, audioclf.Prediction)
    assert as_int.label == as_float.label == as_file.label == "low"  # unscaled, it was "mid"
    assert as_int.top == as_float.top and as_int.scores is not None and as_float.scores is not None
    assert np.array_equal(as_int.scores.probs, as_float.scores.probs)  # identical: the same samples
    assert dict(as_int.top) == pytest.approx(dict(as_file.top), abs=1e-5)
    as_uint8 = np.clip(np.round(clip * 128) + 128, 0, 255).astype(np.uint8)
    (from_uint8,) = model.predict(as_uint8, sampling_rate=16_000)
    assert isinstance(from_uint8, audioclf.Prediction) and from_uint8.label == "low"


def test_integer_scaling_of_each_dtype() -> None:
    from audioclf.labelling.waveforms import as_samples

    assert as_samples(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert as_samples(np.array([0, 128, 192], np.uint8)).tolist() == [-1.0, 0.0, 0.5]
    assert as_samples(np.array([-(2**31), 2**30], np.int32)).tolist() == [-1.0, 0.5]
    assert as_samples(np.array([0, 2**15], np.uint16)).tolist() == [-1.0, 0.0]
    samples = as_samples(np.array([0.25, -0.5], np.float64))
    assert samples.dtype == np.float32 and samples.tolist() == [0.25, -0.5]


def test_a_list_of_waveforms_gets_one_answer_each(model: audioclf.Model, tone_dataset: Path) -> None:
    low = tone_dataset.parent / "low_3_0.wav"
    waves = [tone(1980.0, 0.6, noise=0.05), tone(220.0, 0.6, noise=0.05)]
    results = model.predict([waves[0], low, waves[1]], sampling_rate=16_000)
    assert [r.source for r in results] == ["waveform[0]", str(low.resolve()), "waveform[2]"]
    assert [getattr(r, "label", None) for r in results] == ["high", "low", "low"]
    (single,) = model.predict(waves[0], sampling_rate=16_000)
    assert single.source == "waveform"
    with pytest.raises(audioclf.AudioclfError, match="sampling_rate"):
        model.predict([low, waves[0]])


@pytest.mark.parametrize(
    ("wave", "words"),
    [
        (np.zeros(16_000, bool), "bool"),
        (np.zeros(16_000, np.complex64), "complex"),
        (np.array(["a"] * 10, object), "object"),
        (np.array([0.0, np.nan, 0.1] * 4000, np.float32), "NaN or infinite"),
        (np.array([0.0, np.inf] * 8000), "NaN or infinite"),
        (np.zeros(0, np.float32), "non-empty"),
    ],
)
def test_unusable_waveforms_are_refused_in_one_line(model: audioclf.Model, wave: np.ndarray, words: str) -> None:
    with pytest.raises(audioclf.AudioclfError, match=words) as caught:
        model.predict(wave, sampling_rate=16_000)
    assert "\n" not in str(caught.value) and "waveform" in str(caught.value)
    with pytest.raises(audioclf.AudioclfError, match=r"waveform\[1\]"):
        model.predict([tone(220.0, 0.6), wave], sampling_rate=16_000)


def test_an_input_that_is_neither_a_path_nor_an_array_is_refused(model: audioclf.Model) -> None:
    with pytest.raises(audioclf.AudioclfError, match="input 0 is a float"):
        model.predict([0.1, 0.2, 0.3])  # type: ignore[list-item]
