"""audioclf crossval: grouped folds, the per-fold train -> evaluate loop, the pooled report, resuming."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioclf import CrossvalOptions, CrossvalResult, crossval
from audioclf.cli.main import main
from audioclf.crossvalidation.folds import assign_folds
from audioclf.crossvalidation.report import over_folds
from audioclf.crossvalidation.run import _widen
from audioclf.encoders.spec import parse_spec
from audioclf.errors import ManifestError, TrainingError
from audioclf.evaluation.window_logits import WindowLogits
from audioclf.fitting.probe import FitOptions
from audioclf.fitting.train_probe import TrainOptions
from audioclf.io.manifest import Item, load_manifest

FAST = ["--encoder", "builtin", "--hidden", "0", "--lr", "0.003", "--epochs", "5"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _items(groups: list[tuple[str, str, int]]) -> list[Item]:
    """(group, label, rows) -> items; the files need not exist to assign folds."""
    return [
        Item(f"/data/{g}_{n}.wav", label, None, g, f"m.csv:{i}")
        for i, (g, label, rows) in enumerate(groups)
        for n in range(rows)
    ]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_folds_are_grouped_stratified_and_seeded() -> None:
    # 8 groups of label a, then 4 of label b: 4 stratified folds hold out 2 a-groups and 1 b-group each
    items = _items([(f"a{n}", "a", 3) for n in range(8)] + [(f"b{n}", "b", 2 + n) for n in range(4)])
    fold, names, how = assign_folds(items, Path("m.csv"), 4, seed=0)
    assert names == ["1", "2", "3", "4"] and "StratifiedGroupKFold" in how
    assert fold.shape == (len(items),) and set(fold.tolist()) == {0, 1, 2, 3}  # every row in exactly one fold
    for k in range(4):
        held = [item for item, f in zip(items, fold, strict=True) if f == k]
        groups = {item.group for item in held}
        assert sorted(g[0] for g in groups) == ["a", "a", "b"], groups
    by_group: dict[str, set[int]] = {}
    for item, f in zip(items, fold.tolist(), strict=True):
        by_group.setdefault(item.group, set()).add(f)
    assert all(len(folds) == 1 for folds in by_group.values())  # no group on both sides
    assert np.array_equal(fold, assign_folds(items, Path("m.csv"), 4, seed=0)[0])  # same seed, same folds
    others = [assign_folds(items, Path("m.csv"), 4, seed=s)[0] for s in range(1, 6)]
    assert any(not np.array_equal(fold, other) for other in others)  # the seed is used
    few, names, _ = assign_folds(items[:9], Path("m.csv"), 5, seed=0)  # 3 groups: 3 folds
    assert names == ["1", "2", "3"] and sorted(set(few.tolist())) == [0, 1, 2]


def test_too_few_rows_per_label_to_stratify_gives_grouped_folds() -> None:
    """Every label has fewer rows than folds: scikit-learn refuses to stratify (it raised ValueError here)."""
    items = _items([("a0", "a", 1), ("a1", "a", 1), ("b0", "b", 1), ("b1", "b", 1)])
    fold, names, _ = assign_folds(items, Path("m.csv"), 4, seed=0)
    assert names == ["1", "2", "3", "4"] and sorted(fold.tolist()) == [0, 1, 2, 3]


def test_fold_column_is_honoured_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [[f"f{n}.wav", "ab"[n % 2], f"g{n // 2}", ["10", "2", "1"][n // 4]] for n in range(12)]
    manifest = _write(tmp_path / "m.csv", ["path", "label", "group", "fold"], rows)
    items = load_manifest(manifest)
    fold, names, how = assign_folds(items, manifest, 5, seed=0, column="fold")
    assert names == ["1", "2", "10"] and "'fold'" in how  # numeric order
    assert fold.tolist() == [2] * 4 + [1] * 4 + [0] * 4
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        "".join(json.dumps(dict(zip(["path", "label", "group", "fold"], r, strict=True))) + "\n" for r in rows)
    )
    assert assign_folds(load_manifest(jsonl), jsonl, 5, 0, column="FOLD")[0].tolist() == fold.tolist()
    by_group, names, _ = assign_folds(items, manifest, 5, seed=0, column="group")
    assert names == [f"g{n}" for n in range(6)] and by_group.tolist() == [n // 2 for n in range(12)]

    rows[1][3] = "2"  # g0 now in folds 10 and 2: it would be on both sides
    leaky = _write(tmp_path / "leak.csv", ["path", "label", "group", "fold"], rows)
    with pytest.raises(ManifestError, match=r"leak\.csv:3: group 'g0' is in fold '10' and '2'"):
        assign_folds(load_manifest(leaky), leaky, 5, 0, column="fold")
    rows[1][3] = ""
    gap = _write(tmp_path / "gap.csv", ["path", "label", "group", "fold"], rows)
    with pytest.raises(ManifestError, match=r"gap\.csv:3: empty 'fold'"):
        assign_folds(load_manifest(gap), gap, 5, 0, column="fold")
    with pytest.raises(ManifestError, match="no 'speaker' column"):
        assign_folds(items, manifest, 5, 0, column="speaker")


def test_over_folds_t_interval() -> None:
    stats = over_folds([0.7, 0.8, 0.9])
    assert stats["mean"] == pytest.approx(0.8) and stats["std"] == pytest.approx(0.1) and stats["n_folds"] == 3
    low, high = stats["t_interval"]
    assert low == pytest.approx(0.8 - 4.302653 * 0.1 / 3**0.5, abs=1e-5) and high == 1.0  # clipped


def test_a_label_the_folds_model_never_saw_counts_as_an_error() -> None:
    preds = WindowLogits(
        labels=["a", "b"],
        window_logits=np.array([[2.0, 1.0], [0.0, 3.0]], dtype=np.float32),
        window_recording=np.array([0, 1]),
        window_starts_s=np.zeros(2),
        recordings=["x.wav", "y.wav"],
        recording_true=np.array([0, -1]),  # apply_model: y's label "c" is not one of the model's
        recording_groups=["g", "h"],
    )
    items = [Item("x.wav", "a", None, "g", "1"), Item("y.wav", "c", None, "h", "2")]
    wide = _widen(preds, items, ["a", "b", "c"])
    assert wide.recording_true.tolist() == [0, 2] and wide.window_logits.shape == (2, 3)
    assert (
        wide.window_logits[:, :2].tolist() == preds.window_logits.tolist() and (wide.window_logits[:, 2] < -1e8).all()
    )


def test_crossval_end_to_end_reruns_and_failures(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tone_dataset.read_text().splitlines()
    rows = [[str(tone_dataset.parent / r.split(",")[0]), *r.split(",")[1:]] for r in lines[1:]]
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not really a wav file" * 10)
    manifest = _write(
        tmp_path / "m.csv", ["path", "label", "split", "group"], [*rows, ["broken.wav", "low", "", "spk0"]]
    )
    out, cache = tmp_path / "cv", str(tmp_path / "cache")
    args = ["crossval", "--manifest", str(manifest), "--out", str(out), "--folds", "2", *FAST, "--cache-dir", cache]
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert "ignores the split column" in err and "broken.wav" in err
    assert re.findall(r"^fold (\d/\d)  held out spk", stdout, re.M) == ["1/2", "2/2"]  # a line per fold
    assert "over 2 folds (mean ± std): accuracy" in stdout and "t-interval" in stdout
    assert "recordings: 36" in stdout and "1 failed" in stdout

    summary = json.loads((out / "crossval.json").read_text())
    assert len(summary["folds"]) == 2 and sum(f["n_test"] for f in summary["folds"]) == 36
    assert summary["pooled"]["n"] == 36 and summary["n_failed"] == 1 and summary["labels"] == ["high", "low", "mid"]
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["recording"]["n"] == 36 and sum(map(sum, report["recording"]["confusion"])) == 36
    assert (out / "report" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Folds" in (out / "report" / "report.md").read_text()
    failures = _read(out / "failures.csv")
    assert len(failures) == 1 and failures[0]["row"] == f"{manifest}:38" and "decode" in failures[0]["reason"]

    held: list[str] = []
    for k in (1, 2):
        fold_rows = _read(out / "folds" / f"fold_{k}.csv")
        assert len(fold_rows) == 37 and all(Path(r["path"]).is_absolute() for r in fold_rows)
        test = [r for r in fold_rows if r["split"] == "test"]
        assert {r["group"] for r in test}.isdisjoint({r["group"] for r in fold_rows if r["split"] != "test"})
        held += [r["path"] for r in test]
        assert json.loads((out / f"fold_{k}" / "report" / "report.json").read_text())["recording"]["n"] > 0
    assert sorted(held) == sorted([r[0] for r in rows] + [str(tmp_path / "broken.wav")])  # each row held out once

    model = out / "fold_1" / "audioclf.json"
    before = model.stat().st_mtime_ns
    code, stdout, err = run(capsys, *args, "--quiet")
    assert code == 0, err
    assert stdout.count("kept from an earlier run") == 2 and model.stat().st_mtime_ns == before
    assert json.loads((out / "crossval.json").read_text())["pooled"] == summary["pooled"]

    code, stdout, err = run(capsys, *args, "--quiet", "--epochs", "4")  # other options: the folds are redone
    assert code == 0, err
    assert "kept from an earlier run" not in stdout and model.stat().st_mtime_ns != before

    fit = FitOptions(max_epochs=4)
    train = TrainOptions(
        encoder=parse_spec("builtin"), hidden=0, lr=0.003, fit=fit, cache_dir=Path(cache), progress=False
    )
    seen: list[int] = []
    options = CrossvalOptions(folds=2, train=train, force=True)
    result = crossval(manifest, out, options, on_fold=lambda f: seen.append(f.fold))
    assert isinstance(result, CrossvalResult) and seen == [1, 2] and not any(f.reused for f in result.folds)
    assert result.report["recording"]["n"] == 36 and len(result.failures) == 1
    assert result.over_folds["accuracy"]["n_folds"] == 2 and out / "crossval.json" in result.paths


def test_crossval_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _write(tmp_path / "one.csv", ["path", "label", "group"], [["a.wav", "x", "s"], ["b.wav", "y", "s"]])
    for extra, expected in (
        ([], "at least 2 groups"),
        (["--mode", "finetune"], "--mode finetune is not supported"),
        (["--fold-column", "group"], "at least 2 folds"),
    ):
        code, out, err = run(capsys, "crossval", "--manifest", str(one), "--out", str(tmp_path / "cv"), *extra)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and out == "" and len(errors) == 1 and expected in errors[0], err
    with pytest.raises(TrainingError, match="at least 2 folds"):
        crossval(one, tmp_path / "cv", CrossvalOptions(folds=1))


def test_crossval_help_and_the_light_import() -> None:
    proc = subprocess.run([sys.executable, "-m", "audioclf", "crossval", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--fold-column" in proc.stdout and "--inner-folds" in proc.stdout
    code = "import sys, audioclf; print(callable(audioclf.crossval), 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "True",
        "False",
    ]
