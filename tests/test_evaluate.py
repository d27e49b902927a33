from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from audioclf.errors import AudioclfError
from audioclf.evaluation.metrics import compute_report
from audioclf.evaluation.pooling import recording_max, recording_mean
from audioclf.evaluation.report import summary_lines, write_report
from audioclf.evaluation.window_logits import WindowLogits, recording_logits


def _onehot(pred: list[int], n_classes: int) -> np.ndarray:
    logits = np.zeros((len(pred), n_classes), dtype=np.float32)
    logits[np.arange(len(pred)), pred] = 4.0
    return logits


def _preds(
    true: list[int],
    pred: list[int],
    groups: list[str] | None = None,
    labels: list[str] | None = None,
) -> WindowLogits:
    """One window per recording, predicted class `pred[i]`."""
    labels = labels or [f"c{i}" for i in range(max(max(true), max(pred)) + 1)]
    n = len(true)
    return WindowLogits(
        labels=labels,
        window_logits=_onehot(pred, len(labels)),
        window_recording=np.arange(n),
        window_starts_s=np.zeros(n),
        recordings=[f"rec{i}.wav" for i in range(n)],
        recording_true=np.asarray(true),
        recording_groups=groups or [f"g{i % 4}" for i in range(n)],
    )


def _assert_plain_json(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            _assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain_json(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)
        if isinstance(value, float):
            assert math.isfinite(value)


def test_perfect_predictions() -> None:
    true = [0, 1, 2, 0, 1, 2, 0, 1]
    report = compute_report(_preds(true, true), n_bootstrap=200)
    for level in ("recording", "window"):
        assert report[level]["accuracy"] == 1.0
        assert report[level]["accuracy_ci"] == [1.0, 1.0]
        assert report[level]["macro_f1"] == 1.0
        assert report[level]["balanced_accuracy"] == 1.0
    assert report["errors"] == []
    _assert_plain_json(report)
    json.dumps(report, allow_nan=False)


def test_known_small_case() -> None:
    true = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    report = compute_report(_preds(true, pred), n_bootstrap=100)
    rec = report["recording"]
    assert rec["n"] == 6
    assert rec["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: c0 p=.5 r=.5 -> .5; c1 p=2/3 r=1 -> .8; c2 p=1 r=.5 -> 2/3
    assert rec["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert rec["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert rec["per_class"]["c1"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert rec["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert len(report["errors"]) == 2
    assert {e["recording"] for e in report["errors"]} == {"rec1.wav", "rec5.wav"}
    assert report["errors"][0].keys() == {"recording", "true", "predicted", "confidence"}
    _assert_plain_json(report)


def test_rows_pooled_per_recording() -> None:
    values = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    mean = recording_mean(values, np.array([0, 0, 2]))
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean[[0, 2]], [[2.0, 0.0], [0.0, 5.0]])
    assert np.isnan(mean[1]).all()  # no rows: NaN
    np.testing.assert_allclose(recording_max(values, np.array([0, 0, 2]), 3), [[3, 0], [-np.inf] * 2, [0, 5]])
    # float32 rows sum as torch's index_add_ sums them, so the probe search's scores are unchanged to the bit
    rng = np.random.default_rng(0)
    rows, rec = rng.standard_normal((500, 4)).astype(np.float32), np.sort(rng.integers(0, 7, 500))
    index = torch.as_tensor(rec)
    sums = torch.zeros(7, 4).index_add_(0, index, torch.from_numpy(rows))
    expected = sums / torch.zeros(7).index_add_(0, index, torch.ones(len(index)))[:, None]
    np.testing.assert_array_equal(recording_mean(rows, rec), expected.numpy())


def test_recording_level_differs_from_window_level() -> None:
    # r0 (true 0): 3 windows, 2 right + 1 wrong -> recording right; r1 (true 1): 1 window, right
    logits = np.array([[3, 0], [2, 0], [0, 1], [0, 5]], dtype=np.float32)
    preds = WindowLogits(
        labels=["a", "b"],
        window_logits=logits,
        window_recording=np.array([0, 0, 0, 1]),
        window_starts_s=np.array([0.0, 1.0, 2.0, 0.0]),
        recordings=["r0", "r1"],
        recording_true=np.array([0, 1]),
        recording_groups=["g0", "g1"],
    )
    expected = np.array([[5 / 3, 1 / 3], [0.0, 5.0]])
    np.testing.assert_allclose(recording_logits(preds), expected, rtol=1e-6)
    report = compute_report(preds, n_bootstrap=50)
    assert report["recording"]["accuracy"] == 1.0
    assert report["recording"]["n"] == 2
    assert report["window"]["accuracy"] == pytest.approx(0.75)
    assert report["window"]["n"] == 4
    assert report["window"]["confusion"] == [[2, 1], [0, 1]]


def _clustered_case(clustered: bool) -> WindowLogits:
    n_groups, per_group = 10, 10
    true = [i % 2 for i in range(n_groups * per_group)]
    pred = list(true)
    wrong = range(10) if clustered else range(0, 100, 10)  # all in group 0 vs one per group
    for i in wrong:
        pred[i] = 1 - pred[i]
    groups = [f"g{i // per_group}" for i in range(n_groups * per_group)]
    return _preds(true, pred, groups=groups)


def test_cluster_bootstrap_wider_when_errors_cluster() -> None:
    spread = compute_report(_clustered_case(False), n_bootstrap=500, seed=1)["recording"]
    clustered = compute_report(_clustered_case(True), n_bootstrap=500, seed=1)["recording"]
    assert spread["accuracy"] == clustered["accuracy"] == pytest.approx(0.9)
    for lvl in (spread, clustered):
        lo, hi = lvl["accuracy_ci"]
        assert lo <= lvl["accuracy"] <= hi
        assert lvl["ci_resamples"] == "groups"
    widths = [lvl["accuracy_ci"][1] - lvl["accuracy_ci"][0] for lvl in (spread, clustered)]
    assert widths[1] > widths[0] + 0.05


def test_single_group_resamples_items_and_is_reproducible() -> None:
    true = [i % 3 for i in range(30)]
    pred = [t if i % 4 else (t + 1) % 3 for i, t in enumerate(true)]
    preds = _preds(true, pred, groups=["only"] * 30)
    a = compute_report(preds, n_bootstrap=300, seed=7)
    b = compute_report(preds, n_bootstrap=300, seed=7)
    assert a == b
    assert a["n_groups"] == 1
    rec = a["recording"]
    assert rec["ci_resamples"] == "recordings"
    lo, hi = rec["accuracy_ci"]
    assert lo < rec["accuracy"] < hi


def test_unknown_labels_excluded() -> None:
    preds = _preds([0, 1, -1, -1], [0, 1, 0, 0], labels=["a", "b"])
    report = compute_report(preds, n_bootstrap=20)
    assert report["recording"]["n"] == 2
    assert report["window"]["n"] == 2
    assert report["recording"]["accuracy"] == 1.0
    assert report["n_recordings_excluded"] == 2
    assert report["errors"] == []
    assert any("excluded" in line for line in summary_lines(report))


def test_all_unknown_raises() -> None:
    with pytest.raises(AudioclfError, match="known label"):
        compute_report(_preds([-1, -1], [0, 1], labels=["a", "b"]))


def test_absent_class_gives_zeros_not_nan() -> None:
    report = compute_report(_preds([0, 0, 1], [0, 0, 1], labels=["a", "b", "never"]), n_bootstrap=0)
    rec = report["recording"]
    assert rec["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rec["accuracy_ci"] is None
    _assert_plain_json(report)


def test_write_report_and_summary(tmp_path: Path) -> None:
    labels = ["dog", "cat|wild", "bird"]
    report = compute_report(_preds([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 1, 0], labels=labels), n_bootstrap=50)
    out = tmp_path / "eval"
    paths = write_report(report, out, context={"model_dir": tmp_path / "model", "encoder": "x"})
    assert paths == [out / "report.json", out / "report.md", out / "confusion.png", out / "reliability.png"]
    for p in paths:
        assert p.is_file()
        assert p.stat().st_size > 0
    with open(out / "report.json", encoding="utf-8") as fh:
        loaded = json.load(fh)
    assert loaded["context"] == {"model_dir": str(tmp_path / "model"), "encoder": "x"}
    assert {k: v for k, v in loaded.items() if k != "context"} == report
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "macro-F1" in md
    assert "cat\\|wild" in md
    assert "Confusion" in md
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "reliability.png", "report.json", "report.md"]
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = summary_lines(report)
    assert lines[0].startswith("recordings:")
    assert "95% CI" in lines[0]
    assert lines[1].startswith("windows:")


def test_write_report_many_classes(tmp_path: Path) -> None:
    n = 50
    rng = np.random.default_rng(0)
    true = [i % n for i in range(200)]
    pred = [t if rng.random() < 0.7 else int(rng.integers(n)) for t in true]
    report = compute_report(_preds(true, pred, labels=[f"class_{i:02d}" for i in range(n)]), n_bootstrap=20)
    assert len(report["errors"]) <= 20
    confidences = [e["confidence"] for e in report["errors"]]
    assert confidences == sorted(confidences, reverse=True)
    paths = write_report(report, tmp_path)
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_calibration_metrics_on_known_cases() -> None:
    from audioclf.evaluation.calibration import calibration_metrics

    # a coin flip said as 50/50, right half the time: calibrated, Brier 0.5, NLL ln 2
    half = calibration_metrics(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    assert half["ece"] == pytest.approx(0.0) and half["brier"] == pytest.approx(0.5)
    assert half["nll"] == pytest.approx(np.log(2))
    # 99 % sure and right 3 times out of 4: overconfident by 0.24
    sure = calibration_metrics(np.array([[4.6, 0.0]] * 4), np.array([0, 0, 0, 1]))
    confidence = 1 / (1 + np.exp(-4.6))
    assert sure["ece"] == pytest.approx(confidence - 0.75, abs=1e-9)
    assert [b["n"] for b in sure["bins"]][-1] == 4 and sum(b["n"] for b in sure["bins"]) == 4
