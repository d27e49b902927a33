"""A float file with NaN or infinite samples is one failed row, named, at decode: never an embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import manifest_rows, tone, write_audio, write_manifest

from audioclf.cli.main import main


def _nan_wav(path: Path, *, everywhere: bool) -> Path:
    samples = tone(440.0, 0.6)
    if everywhere:
        samples[:] = np.nan
    else:
        samples[4000] = np.inf
    return write_audio(path, samples, 16_000, codec="pcm_f32le")


def test_train_skips_a_nan_file_and_the_cache_stays_clean(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = manifest_rows(tone_dataset)
    bad = _nan_wav(tmp_path / "inf.wav", everywhere=False)
    rows.append({"path": str(bad), "label": "low", "split": "", "group": "spk9"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    cache = tmp_path / "cache"
    out = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", "builtin", "--epochs", "5"]
    code = main([*args, "--cache-dir", str(cache), "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "inf.wav: has NaN or infinite samples (first at 0.25 s)" in (out / "failures.csv").read_text()
    for entry in (cache / "embeddings").rglob("*.npz"):
        with np.load(entry) as data:
            assert np.isfinite(data["embeddings"]).all(), entry


def test_predict_answers_the_good_file_and_fails_the_nan_one(
    tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = tone_model
    good = write_audio(tmp_path / "good.wav", tone(220.0, 0.6), 16_000)
    nan = _nan_wav(tmp_path / "nan.wav", everywhere=True)
    capsys.readouterr()
    code = main(["predict", "--model", str(model), str(good), str(nan), "--json", "--cache-dir", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 3, err
    assert [line.get("label") for line in lines if "error" not in line] == ["low"]
    failed = [line for line in lines if "error" in line]
    assert len(failed) == 1 and "has NaN or infinite samples (first at 0.00 s)" in failed[0]["error"]
