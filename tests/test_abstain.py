"""Abstaining: a spoken-digit model answers "unknown" to sounds it never heard (synthesised rain, sirens, an
engine, noise, music), still labels a new speaker's digits, and reports coverage and risk in evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_audio
from ood_sounds import ood_clips

import audioclf
from audioclf.cli.main import main
from audioclf.errors import AudioclfError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A builtin-encoder model on jackson and nicolas (the sample's train rows); theo is never seen."""
    work = tmp_path_factory.mktemp("abstain")
    model, cache = work / "model", work / "cache"
    args = ["train", "--manifest", str(SAMPLE / "manifest.csv"), "--out", str(model), "--encoder", "builtin"]
    code = main([*args, "--cache-dir", str(cache), "--quiet"])
    assert code == 0
    return model, cache


def theo_clips() -> list[Path]:
    rows = csv.DictReader((SAMPLE / "manifest.csv").open())
    return [SAMPLE / r["path"] for r in rows if r["split"] == "test"]


def test_sounds_never_heard_are_unknown_and_a_new_speaker_is_labelled(
    digits: tuple[Path, Path], tmp_path: Path
) -> None:
    model_dir, cache = digits
    model = audioclf.load(model_dir, cache_dir=cache)
    meta = json.loads((model_dir / "audioclf.json").read_text())["abstain"]
    assert 0.0 < meta["min_confidence"] < 1.0 and meta["novelty"]["method"] == "mahalanobis"
    clips = ood_clips(per_kind=4, seed=1)
    paths = [write_audio(tmp_path / f"{kind}_{i}.wav", wave, 16_000) for i, (kind, wave) in enumerate(clips)]
    odd = model.predict(paths, min_confidence="auto")
    unknown = [p for p in odd if p.label == "unknown"]
    # the builtin encoder's features tell sirens, engines and noise from speech best; its synthetic barks
    # (harmonic, voice-like) and applause pass as speech (bench/ood_fsdd.py measures every kind)
    assert len(unknown) / len(odd) >= 0.5, [(Path(p.source).name, p.novelty) for p in odd]
    clear = [p for (kind, _), p in zip(clips, odd, strict=True) if kind in ("siren", "engine", "white_noise")]
    assert all(p.label == "unknown" for p in clear)
    assert all(p.best_guess in model.labels and p.unknown_reason for p in unknown)
    theo = model.predict(theo_clips(), min_confidence="auto")
    labelled = [p for p in theo if p.label != "unknown"]
    assert len(labelled) / len(theo) >= 0.85
    truth = {str(c.resolve()): c.name.split("_")[0] for c in theo_clips()}
    assert np.mean([p.label == truth[p.source] for p in labelled]) >= 0.8
    plain = model.predict(paths)  # without a minimum confidence nothing abstains
    assert all(p.label in model.labels for p in plain)


def test_unknown_in_json_lines(digits: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir, cache = digits
    noise = write_audio(tmp_path / "noise.wav", ood_clips(1, seed=3)[-1][1], 16_000)
    args = ["predict", "--model", str(model_dir), str(noise), "--min-confidence", "auto", "--json"]
    code = main([*args, "--cache-dir", str(cache), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    assert got["label"] == "unknown" and got["unknown_reason"] == "unlike the training audio"
    assert got["best_guess"] == got["top"][0]["label"] and got["novelty"] > 1.0


def test_a_threshold_outside_zero_to_one_is_refused(digits: tuple[Path, Path]) -> None:
    model = audioclf.load(digits[0], cache_dir=digits[1])
    with pytest.raises(AudioclfError, match="use a probability from 0 to 1"):
        model.predict(theo_clips()[:1], min_confidence=1.5)


def test_evaluate_reports_coverage_and_the_risk_coverage_curve(
    digits: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, cache = digits
    args = ["evaluate", "--model", str(model_dir), "--manifest", str(SAMPLE / "manifest.csv"), "--out", str(tmp_path)]
    code = main([*args, "--cache-dir", str(cache), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    abstain, accuracy = report["abstain"], report["recording"]["accuracy"]
    point = abstain["at_threshold"]
    assert point["novelty_detector"] and point["coverage"] >= 0.85 and point["accuracy"] >= accuracy - 0.02
    # ranking by confidence puts errors last more often than not: the area is below the plain error rate
    assert abstain["aurc"] < 1 - accuracy
    curve = abstain["curve"]
    assert curve[-1]["coverage"] == 1.0 and curve[-1]["risk"] == pytest.approx(1 - accuracy)
    assert "abstaining: at confidence" in out
    assert (tmp_path / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    code = main([*args, "--min-confidence", "2", "--cache-dir", str(cache), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "use a probability from 0 to 1 (see --min-confidence)" in err
