"""End to end through the CLI, with a tiny random wav2vec2 saved to disk: the path a real model takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_args, tone, write_audio

from audioclf.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_evaluate_predict_with_hf_encoder(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = tmp_path / "model", str(tmp_path / "cache")
    common = ["--cache-dir", cache, "--quiet"]
    train = cli_args(
        "train", manifest=tone_dataset, out=model, encoder=f"hf:{tiny_wav2vec2}", epochs=40, cache_dir=cache
    )
    code, out, err = run(capsys, *train)
    assert code == 0, err
    assert "candidate (cross-validation)" in out and "cross-validation accuracy" in out
    meta = json.loads((model / "audioclf.json").read_text())
    assert meta["labels"] == ["high", "low", "mid"] and meta["encoder"]["spec"] == f"hf:{tiny_wav2vec2}"
    assert meta["head"]["n_layers"] == 3 and (model / "head.safetensors").is_file()
    assert meta["training"]["n_train_recordings"] == 27  # test rows held out; the final probe sees all the others
    assert meta["training"]["cv_folds"] == 3  # one fold per training speaker of the tone set
    searched = {c["config"] for c in meta["training"]["search"]}
    assert {"logreg C=0.1 layer=last", "logreg C=0.1 layer=mean", "linear lr=0.001 wd=0.1 layer=weighted"} <= searched
    assert meta["metrics"]["cv_accuracy"] > 0.5

    code, out, err = run(capsys, "evaluate", "--model", str(model), "--manifest", str(tone_dataset), *common)
    assert code == 0, err
    report = json.loads((model / "evaluation" / "report.json").read_text())
    assert report["recording"]["n"] == 9  # the split=test rows only
    assert {"accuracy", "accuracy_ci", "macro_f1", "balanced_accuracy", "confusion"} <= set(report["recording"])
    assert (model / "evaluation" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "recordings:" in out

    folder = tmp_path / "new"
    folder.mkdir()
    write_audio(folder / "x.flac", tone(660.0, 2.5), 16_000)
    code, out, err = run(capsys, "predict", "--model", str(model), str(folder), "--json", "--top-k", "2", *common)
    assert code == 0, err
    (line,) = out.strip().splitlines()
    pred = json.loads(line)
    assert pred["label"] == "mid" and len(pred["top"]) == 2  # a 660 Hz tone
    p1, p2 = (t["probability"] for t in pred["top"])
    assert pred["top"][0]["label"] == pred["label"] and pred["probability"] == p1
    assert 1.0 >= p1 >= p2 > 0.0 and p1 + p2 <= 1.0 + 1e-6  # the two most likely of three softmax outputs


def test_train_skips_an_undecodable_file(
    tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = tone_dataset.read_text().splitlines()
    base = tone_dataset.parent
    rows = [lines[0]] + [f"{base / r.split(',')[0]},{','.join(r.split(',')[1:])}" for r in lines[1:]]
    (data / "broken.wav").write_bytes(b"RIFF....not really a wav file" * 10)
    rows.append("broken.wav,low,,spk0")
    manifest = data / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    model = tmp_path / "model"
    code, out, err = run(
        capsys,
        "train",
        "--manifest",
        str(manifest),
        "--out",
        str(model),
        "--encoder",
        "builtin",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "20",
        "--quiet",
    )
    assert code == 0, err
    assert "broken.wav" in err and "1 failed" in out
    failures = (model / "failures.csv").read_text()
    assert "broken.wav" in failures and "m.csv:" in failures


def test_one_line_errors_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("path,label\nnope.wav,x\nnope2.wav,y\n")
    code, _, err = run(capsys, "train", "--manifest", str(bad), "--out", str(tmp_path / "o"), "--encoder", "builtin")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "m.csv:2" in errors[0] and "nope.wav" in errors[0]
    code, _, err = run(capsys, "predict", "--model", str(tmp_path), str(bad))
    assert code == 2 and "not an audioclf model" in err


def test_refuses_to_overwrite_a_model(tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--manifest", str(tone_dataset), "--encoder", "builtin", "--epochs", "5", "--quiet"]
    args += ["--out", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 2 and "--force" in err
    assert run(capsys, *args, "--force")[0] == 0


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "embed"])
def test_help(command: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "audioclf", command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: audioclf" in proc.stdout


def test_predict_reports_bad_files_and_goes_on(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = str(tmp_path / "m"), str(tmp_path / "c")
    args = ["train", "--manifest", str(tone_dataset), "--encoder", "builtin", "--epochs", "5", "--quiet"]
    assert run(capsys, *args, "--out", model, "--cache-dir", cache)[0] == 0
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 100)
    good = tone_dataset.parent / "low_3_0.wav"
    code, out, err = run(capsys, "predict", "--model", model, str(bad), str(good), "--cache-dir", cache, "--quiet")
    assert code == 3 and "low_3_0.wav" in out and "bad.mp3" not in out  # 3: some inputs were not labelled
    assert "bad.mp3" in err
    code, out, _ = run(
        capsys, "predict", "--model", model, str(bad), str(good), "--cache-dir", cache, "--quiet", "--json"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 3 and [Path(o["source"]).name for o in lines] == ["low_3_0.wav", "bad.mp3"]
    assert "label" in lines[0] and "cannot decode" in lines[1]["error"]
    code, out, err = run(capsys, "predict", "--model", model, str(bad), "--cache-dir", cache, "--quiet")
    assert code == 2 and out == "" and err.strip().splitlines()[-1].startswith("error: ") and "bad.mp3" in err


def test_embed_fills_the_cache_that_train_then_reuses(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(tmp_path / "c")
    code, out, err = run(capsys, "embed", "--manifest", str(tone_dataset), "--encoder", "builtin", "--cache-dir", cache)
    assert code == 0, err
    assert "embedded 36 recordings (0 from cache" in out
    args = ["train", "--manifest", str(tone_dataset), "--encoder", "builtin", "--epochs", "3", "--cache-dir", cache]
    code, out, err = run(capsys, *args, "--out", str(tmp_path / "m"))
    assert code == 0, err
    assert "embedded 27 recordings (27 from cache)" in out  # the 9 test rows are not read by train


def test_test_size_holds_out_whole_groups(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    args = ["train", "--manifest", str(tone_dataset), "--encoder", "builtin", "--epochs", "5", "--test-size", "1"]
    code, out, err = run(capsys, *args, "--out", str(model), "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert "held-out test groups" in out and "recordings: 9" in out
    held = (model / "test_split.csv").read_text().splitlines()
    assert held[0] == "path,label,split,group" and len(held) == 10
    assert len({line.rsplit(",", 1)[1] for line in held[1:]}) == 1  # one whole speaker
    meta = json.loads((model / "audioclf.json").read_text())
    assert meta["training"]["n_train_recordings"] == 18
    assert json.loads((model / "report" / "report.json").read_text())["recording"]["n"] == 9


def test_a_torch_head_prints_its_epochs(tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An MLP probe is refitted for the epoch count the folds chose; each epoch line shows the CV curve."""
    args = ["train", "--manifest", str(tone_dataset), "--encoder", "builtin", "--hidden", "512", "--epochs", "8"]
    code, out, err = run(capsys, *args, "--out", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert "epoch" in out and "val_f1" in out and "mean train loss" in out and "cross-validation accuracy" in out
    meta = json.loads((tmp_path / "m" / "audioclf.json").read_text())
    assert meta["head"]["hidden"] == 512 and 1 <= meta["training"]["epochs"] <= 8
    assert out.count("\n    1 ") == 1  # one epoch table: the refit's


def test_an_object_store_url_is_not_taken_for_a_cache_folder(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "audioclf", "embed", "--manifest", str(tmp_path / "m.csv"), "--cache-dir", "s3://b/c"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "a URL is not a folder" in proc.stderr
    assert not (tmp_path / "s3:").exists()


def test_flags_of_the_other_mode_are_refused_not_ignored(
    tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--manifest", str(tone_dataset), "--out", str(tmp_path / "m"), "--encoder", "builtin"]
    assert main([*base, "--augment", "--resume"]) == 2
    assert "--augment, --resume: not used by the probe" in capsys.readouterr().err
    assert main([*base, "--mode", "finetune", "--layer", "last"]) == 2
    assert "--layer: not used by fine-tuning; remove it" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before anything was written
