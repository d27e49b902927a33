"""evaluate never scores what the model was trained on unless asked, and never replaces training's own report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import manifest_rows, write_manifest

from audioclf.cli.main import main
from audioclf.encoders.spec import parse_spec


@pytest.fixture(scope="module")
def held_out_model(tone_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The builtin model of the tone set, with one training speaker also held out by --test-size."""
    root = tmp_path_factory.mktemp("honest")
    model, cache = root / "model", root / "cache"
    args = ["train", "--manifest", str(tone_dataset), "--out", str(model), "--encoder", "builtin", "--epochs", "5"]
    assert main([*args, "--test-size", "1", "--cache-dir", str(cache), "--quiet"]) == 0
    return model, cache


def test_evaluate_leaves_out_training_rows_and_keeps_the_held_out_report(
    held_out_model: tuple[Path, Path], tone_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = held_out_model
    capsys.readouterr()
    held_report = (model / "report" / "report.json").read_bytes()
    # --split all: 36 rows, of which 18 trained the probe; the 9 --test-size rows and the 9 test rows are unseen
    code = main(["evaluate", "--model", str(model), "--manifest", str(tone_dataset), "--split", "all"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((model / "evaluation" / "report.json").read_text())
    assert report["recording"]["n"] == 18
    assert "18 row(s) the model was trained on (same group, file or audio) were left out" in out
    assert "left out" in report["context"]["training_rows"]
    assert (model / "report" / "report.json").read_bytes() == held_report  # training's held-out report stays

    args = ["evaluate", "--model", str(model), "--manifest", str(tone_dataset), "--split", "all"]
    code = main([*args, "--include-training"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads((model / "evaluation" / "report.json").read_text())["recording"]["n"] == 36
    assert "are counted: this is not a held-out estimate" in out
    assert (model / "report" / "report.json").read_bytes() == held_report


def test_evaluate_refuses_when_every_row_was_trained_on(
    held_out_model: tuple[Path, Path], tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = held_out_model
    held = {r["group"] for r in manifest_rows(model / "test_split.csv")}
    trained = [r for r in manifest_rows(tone_dataset) if r["group"] not in held and not r["split"]]
    assert len(trained) == 18
    # the same audio under other names and a new group: still seen (and with no split column, all rows count)
    renamed = []
    for r in trained:
        copy = tmp_path / f"copy_{Path(r['path']).name}"
        shutil.copy(r["path"], copy)
        renamed.append({"path": str(copy), "label": r["label"], "group": "someone-else"})
    manifest = write_manifest(tmp_path / "renamed.csv", renamed)
    capsys.readouterr()
    code = main(["evaluate", "--model", str(model), "--manifest", str(manifest)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: {manifest}: all {len(renamed)} chosen row(s) were used to train this model (same group, file or "
        "audio); evaluate on rows it has not seen, or count training rows explicitly (not a held-out estimate) "
        "(see --include-training)"
    ], err


def test_train_refuses_a_test_row_whose_group_has_training_rows(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = manifest_rows(tone_dataset)
    leaky = next(r for r in rows if r["group"] == "spk0")
    leaky["split"] = "test"
    manifest = write_manifest(tmp_path / "leaky.csv", rows)
    capsys.readouterr()
    code = main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "m"), "--encoder", "builtin"])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"{manifest}:2: test row of group 'spk0', which also has training rows (1 such test row(s))" in err
    assert not (tmp_path / "m").exists()


def test_the_train_summary_counts_the_whole_run(
    tone_model: tuple[Path, Path], tone_dataset: Path, tmp_path: Path
) -> None:
    """The novelty fit and the saving come after the probe: the total time covers them too."""
    import time

    from audioclf.fitting.train_probe import TrainOptions, train

    options = TrainOptions(encoder=parse_spec("builtin"), cache_dir=tone_model[1], progress=False)
    started = time.perf_counter()
    summary = train(tone_dataset, tmp_path / "m", options)
    wall = time.perf_counter() - started
    assert (tmp_path / "m" / "novelty.safetensors").is_file()
    assert 0.95 * wall <= summary.seconds <= wall


def test_a_pipe_among_the_rows_is_not_seen_and_does_not_stop_the_check(tmp_path: Path) -> None:
    """Deciding whether a row was trained on hashes its file; a named pipe must not end evaluate there."""
    import os

    from audioclf.io.manifest import Item
    from audioclf.model.training_set import TrainingSet

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    row = Item(str(fifo), "low", None, "", "m.csv:2")
    assert not TrainingSet(frozenset(), frozenset(), frozenset()).seen(row)
