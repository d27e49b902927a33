"""ONNX export: tiny random wav2vec2 and Whisper probes (saved and loaded back as a user's checkpoint is) exported,
run through onnxruntime by `audioclf predict` and by the README's example, against the original folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny

from audioclf.cli.main import main

pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (dev extras)")
pytest.importorskip("onnxscript", reason="ONNX export tests need onnxscript (dev extras)")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "fsdd-sample" / "recordings"
CLIPS = [SAMPLE / f"{d}_{s}_{t}.wav" for d in (1, 3, 7) for s in ("jackson", "nicolas", "theo") for t in (5, 6)]


def train_tiny(folder: Path, family: str, extra: list[str]) -> tuple[Path, Path]:
    encoder = save_tiny(family, folder / family)
    rows = [f"{SAMPLE / f'{d}_{s}_{t}.wav'},{d},{s}" for d in (1, 3, 7) for s in ("jackson", "nicolas") for t in (0, 1)]
    manifest = folder / "train.csv"
    manifest.write_text("path,label,group\n" + "\n".join(rows) + "\n")
    model, cache = folder / "model", folder / "cache"
    args = ["train", "--manifest", str(manifest), "--out", str(model), "--encoder", f"hf:{encoder}", *extra]
    assert main([*args, "--precision", "fp32", "--cache-dir", str(cache), "--quiet"]) == 0
    return model, cache


@pytest.fixture(scope="module", params=["wav2vec2", "whisper"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model, its ONNX export, cache): a probe on a tiny encoder of each input kind (raw samples; log-mel)."""
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}")
    family = "hubert" if request.param == "wav2vec2" else "whisper"  # hubert: wav2vec2's architecture and extractor
    extra = ["--hidden", "8", "--layer", "weighted"] if family == "hubert" else ["--window", "1", "--hop", "0.5"]
    model, cache = train_tiny(folder, family, extra)
    out = folder / "onnx"
    assert main(["export", "--model", str(model), "--format", "onnx", "--out", str(out), "--quiet"]) == 0
    return model, out, cache


def predicted(model: Path, cache: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict]:
    capsys.readouterr()
    args = ["predict", "--model", str(model), *map(str, CLIPS), "--json", "--top-k", "3", *extra]
    assert main([*args, "--cache-dir", str(cache), "--quiet"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def probabilities(answers: list[dict]) -> np.ndarray:
    return np.array([[t["probability"] for t in sorted(a["top"], key=lambda t: t["label"])] for a in answers])


def test_the_export_predicts_what_the_model_does(
    exported: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, out, cache = exported
    card = json.loads((out / "audioclf.json").read_text())
    assert card["mode"] == "onnx" and card["onnx"]["max_difference"] <= 1e-3 and "head" not in card
    original, onnx = predicted(model, cache, capsys), predicted(out, cache, capsys)
    np.testing.assert_allclose(probabilities(onnx), probabilities(original), atol=1e-3)
    assert [a["label"] for a in onnx] == [a["label"] for a in original]

    segments = predicted(out, cache, capsys, "--segments")  # the exported folder is a model like any other
    assert all(a["segments"] for a in segments)


def test_the_readme_example_runs_without_torch(
    exported: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/onnx_predict.py (shown in the README) with torch and transformers made unimportable."""
    model, out, cache = exported
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nfor name in ('torch', 'transformers'):\n    sys.modules[name] = None\n")
    clip = CLIPS[0]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "onnx_predict.py"), str(out), str(clip)],
        capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    label, probability = done.stdout.splitlines()[0].split("\t")
    ours = predicted(model, cache, capsys)[0]
    assert label == ours["label"] and abs(float(probability) - ours["probability"]) < 1e-3


def test_int8_weights_are_kept_only_where_they_agree_with_fp32(
    exported: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from audioclf.fitting.onnx_quantize import ReadOptions, probabilities
    from audioclf.io.audio import WindowOptions

    model, out, cache = exported
    small = tmp_path / "int8"
    capsys.readouterr()
    assert main(["export", "--model", str(model), "--out", str(small), "--quantize", "int8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "on recordings you give" in err and "(see --check)" in err and len(err.splitlines()) == 1

    by_hand = tmp_path / "by-hand.onnx"  # the same quantisation, and the agreement it should be judged by
    quantize_dynamic(str(out / "model.onnx"), str(by_hand), weight_type=QuantType.QInt8)
    card = json.loads((out / "audioclf.json").read_text())
    reads = ReadOptions(WindowOptions(**card["windows"]), 1, 16_000, len(card["labels"]))
    t = card["calibration"]["temperature"]
    exact, quantized = (probabilities(p, CLIPS, reads, t) for p in (out / "model.onnx", by_hand))
    agreement = float((exact.argmax(1) == quantized.argmax(1)).mean())
    args = ["export", "--model", str(model), "--out", str(small), "--quantize", "int8", "--check", *map(str, CLIPS)]
    code = main([*args, "--quiet"])
    if agreement < 0.99:
        assert code == 2 and "int8 weights change the answer" in capsys.readouterr().err
        assert not (small / "audioclf.json").exists()
        return
    assert code == 0
    onnx = json.loads((small / "audioclf.json").read_text())["onnx"]
    assert onnx["quantized"] == "int8" and onnx["int8_agreement"] == agreement and onnx["int8_checked"] == len(CLIPS)
    assert (small / "model.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    answers = predicted(small, cache, capsys)
    assert [a["label"] for a in answers] == [card["labels"][k] for k in quantized.argmax(1)]  # what it was judged by


def test_what_cannot_be_exported_is_refused_in_one_line(
    tone_model: tuple[Path, Path], exported: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [(tone_model[0], "the built-in encoder's front end is numpy code"), (exported[1], "already an ONNX export")]
    for model, message in cases:
        capsys.readouterr()
        assert main(["export", "--model", str(model), "--out", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "x" / "audioclf.json").exists()


def test_the_readme_shows_the_example_as_it_is() -> None:
    example = (ROOT / "examples" / "onnx_predict.py").read_text()
    assert example[example.index("import json") :].strip() in (ROOT / "README.md").read_text()
