"""Segments: window scores -> labelled time spans, their files (Audacity, Raven, WebVTT, chapters, CSV), plots,
and the whole path on a long recording assembled from known clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

from audioclf.cli.main import main
from audioclf.errors import AudioclfError
from audioclf.evaluation.segments import Segment, SegmentOptions, frame_grid, segments_of
from audioclf.labelling.prediction import Prediction
from audioclf.labelling.segment_files import (
    audacity_labels,
    chapters,
    csv_table,
    output_stem,
    raven_table,
    render,
    webvtt,
)

LABELS = ["low", "mid", "high"]


def one_hot(codes: list[int], p: float = 0.9) -> np.ndarray:
    probs = np.full((len(codes), len(LABELS)), (1 - p) / (len(LABELS) - 1))
    probs[np.arange(len(codes)), codes] = p
    return probs


def test_runs_become_segments_and_a_one_window_blip_is_smoothed_away() -> None:
    codes = [0, 0, 0, 0, 2, 0, 0, 1, 1, 1, 1]
    starts, durations = np.arange(len(codes), dtype=float), np.ones(len(codes))
    raw = segments_of(starts, durations, one_hot(codes), LABELS, 1.0, SegmentOptions("none"))
    expected = [(0, 4, "low"), (4, 5, "high"), (5, 7, "low"), (7, 11, "mid")]
    assert [(s.start_s, s.end_s, s.label) for s in raw] == expected
    smooth = segments_of(starts, durations, one_hot(codes), LABELS, 1.0, SegmentOptions("median", 3))
    assert [(s.start_s, s.end_s, s.label) for s in smooth] == [(0, 7, "low"), (7, 11, "mid")]
    assert smooth[0].mean_probability == pytest.approx((6 * 0.9 + 0.05) / 7)
    assert smooth[0].max_probability == pytest.approx(0.9)


def test_segments_shorter_than_the_minimum_join_their_longer_neighbour() -> None:
    codes = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    starts, durations = np.arange(10) * 0.5, np.full(10, 0.5)
    options = SegmentOptions("none", 1, min_duration_s=1.5)
    segs = segments_of(starts, durations, one_hot(codes), LABELS, 0.5, options)
    assert [(s.start_s, s.end_s, s.label) for s in segs] == [(0.0, 1.5, "low"), (1.5, 5.0, "high")]


def test_overlapping_windows_share_frames_and_low_confidence_is_unknown() -> None:
    # windows of 2 s every 1 s: each 1 s frame is the mean of the (up to) two windows over it
    starts, durations = np.arange(4, dtype=float), np.full(4, 2.0)
    probs = one_hot([0, 0, 2, 2])
    f_start, f_end, frame_probs = frame_grid(starts, durations, probs, 1.0)
    assert f_start.tolist() == [0, 1, 2, 3, 4] and f_end.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(frame_probs[2], (probs[1] + probs[2]) / 2)  # frame 2-3 s: windows 1 and 2
    segs = segments_of(starts, durations, probs, LABELS, 1.0, SegmentOptions("none"), min_confidence=0.6)
    assert [(s.start_s, s.end_s, s.label) for s in segs] == [(0, 2, "low"), (2, 3, "unknown"), (3, 5, "high")]


@pytest.mark.parametrize(("smooth", "message"), [("gauss:3", "use one of"), ("median:x", r"KIND\[:FRAMES\]")])
def test_bad_smoothing_is_one_line(smooth: str, message: str) -> None:
    with pytest.raises(AudioclfError, match=message):
        SegmentOptions.parse(smooth)


SEGMENTS = [Segment(0.0, 12.5, "travel", 0.91, 0.99), Segment(12.5, 3725.25, "food, drink", 0.62, 0.8)]


def test_audacity_and_raven_files_parse_back() -> None:
    rows = [line.split("\t") for line in audacity_labels(SEGMENTS).splitlines()]
    assert [(float(a), float(b), c) for a, b, c in rows] == [(0.0, 12.5, "travel"), (12.5, 3725.25, "food, drink")]
    table = list(csv.DictReader(raven_table(SEGMENTS).splitlines(), delimiter="\t"))
    assert [r["Selection"] for r in table] == ["1", "2"]
    assert float(table[1]["Begin Time (s)"]) == 12.5 and float(table[1]["End Time (s)"]) == 3725.25
    assert table[1]["Label"] == "food, drink" and float(table[0]["Confidence"]) == 0.91
    assert {"View", "Channel", "Low Freq (Hz)", "High Freq (Hz)"} <= set(table[0])


def test_webvtt_and_chapters() -> None:
    vtt = webvtt(SEGMENTS)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:12.500\ntravel (0.91)\n")
    assert "00:00:12.500 --> 01:02:05.250\nfood, drink (0.62)" in vtt
    assert chapters(SEGMENTS) == "00:00 travel\n00:12 food, drink\n"


def test_batch_tables_and_per_input_files() -> None:
    preds = [Prediction(src, "travel", [("travel", 0.9)], [], segments=SEGMENTS) for src in ("a/x.wav", "b/x.wav")]
    table = list(csv.DictReader(csv_table(preds).splitlines()))
    assert len(table) == 4 and table[3]["source"] == "b/x.wav" and table[3]["label"] == "food, drink"
    assert output_stem("a/x.wav") != output_stem("b/x.wav") and output_stem("a/x.wav").startswith("x-")
    assert output_stem("https://h/v/../../etc/passwd?x=1").startswith("passwd-")
    with pytest.raises(AudioclfError, match="one input's segments"):
        render(preds, "audacity")
    with pytest.raises(AudioclfError, match="segment format 'srt'"):
        render(preds, "srt")


PIECES = [("low", 3.0), ("high", 2.0), ("mid", 4.0), ("low", 3.0)]  # a 12 s recording with 3 known boundaries


def long_recording(path: Path) -> Path:
    freqs = {"low": 220.0, "mid": 660.0, "high": 1980.0}
    parts = [tone(freqs[label] * 1.02, seconds, noise=0.05, seed=i) for i, (label, seconds) in enumerate(PIECES)]
    return write_audio(path, np.concatenate(parts), 16_000)


def test_a_long_recording_comes_back_as_its_segments(
    tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = tone_model
    audio = long_recording(tmp_path / "long.wav")
    out = tmp_path / "out"
    # a window across a boundary holds two tones, which can look like a third: --min-duration drops such blips
    args = ["predict", "--model", str(model), str(audio), "--window", "0.5", "--hop", "0.25", "--min-duration", "0.6"]
    code = main([*args, "--format", "audacity", "--out", str(out), "--plot", "--cache-dir", str(cache), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    stem = output_stem(str(audio.resolve()))
    labels = [line.split("\t") for line in (out / f"{stem}.txt").read_text().splitlines()]
    got = [(float(a), float(b), label) for a, b, label in labels]
    assert [label for _, _, label in got] == [label for label, _ in PIECES]
    truth = np.cumsum([0.0] + [s for _, s in PIECES])
    for (start, end, _), t0, t1 in zip(got, truth[:-1], truth[1:], strict=True):
        assert abs(start - t0) <= 0.5 and abs(end - t1) <= 0.5
    table = list(csv.DictReader((out / "segments.csv").open()))
    assert [r["label"] for r in table] == [label for label, _ in PIECES]
    assert all(0.0 <= float(r["confidence"]) <= float(r["max_probability"]) <= 1.0 for r in table)
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segments_in_json_and_the_python_api(tone_model: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    import audioclf

    model, cache = tone_model
    audio = long_recording(tmp_path / "long.flac")
    args = ["predict", "--model", str(model), str(audio), "--segments", "--window", "0.5", "--min-duration", "1"]
    code = main([*args, "--json", "--cache-dir", str(cache), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    segs = json.loads(out)["segments"]
    assert [s["label"] for s in segs] == [label for label, _ in PIECES]  # default hop: half the window
    (pred,) = audioclf.load(model, cache_dir=cache).predict(audio, segments=True, window=0.5, min_duration=1)
    assert [s.label for s in pred.segments] == [s["label"] for s in segs]
    assert pred.segments[0].start_s == 0.0 and pred.segments[-1].end_s == pytest.approx(12.0, abs=0.01)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "srt"], "segment format 'srt': use one of csv, jsonl, audacity, raven, vtt, chapters"),
        (["--smooth", "gauss"], "(see --smooth)"),
        (["--plot"], "give a folder with --out"),
        (["--min-confidence", "1.5"], "use a probability from 0 to 1"),
        (["--min-confidence", "high"], "'high': use a probability from 0 to 1, or auto (see --min-confidence)"),
        (["--window", "0.01"], "--window/--hop: window 0.01 s: use 0.1 s to 86400 s"),
        (["--format", "raven", "--segments", "TWO"], "holds one input's segments; give an output folder"),
        (["--segments", "SHORT"], "s of audio is shorter than one 0.5 s window, so it is one segment"),
    ],
)
def test_bad_segment_options_are_one_line(
    tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    model, cache = tone_model
    audio = str(long_recording(tmp_path / "a.wav"))
    if "SHORT" in extra:  # a 0.3 s clip, and windows longer than that
        audio = str(write_audio(tmp_path / "short.wav", tone(220, 0.3), 16_000))
        extra = ["--segments", "--window", "0.5"]
    inputs = [audio, audio] if "TWO" in extra else [audio]
    extra = [e for e in extra if e != "TWO"]
    code = main(["predict", "--model", str(model), *inputs, *extra, "--cache-dir", str(cache), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def annotated_manifest(root: Path) -> Path:
    """Two long recordings, each row one annotated range (the last row without an end: to the end)."""
    rows = []
    for k in range(2):
        audio = long_recording(root / f"long{k}.wav")
        t = 0.0
        for i, (label, seconds) in enumerate(PIECES):
            end = "" if i == len(PIECES) - 1 else f"{t + seconds:g}"
            rows.append(f"{audio.name},{label},{t:g},{end},rec{k}\n")
            t += seconds
    manifest = root / "annotated.csv"
    manifest.write_text("path,label,start,end,group\n" + "".join(rows))
    return manifest


@pytest.mark.parametrize("fine", [False, True])
def test_evaluate_scores_the_segments_of_annotated_recordings(
    tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], fine: bool
) -> None:
    model, cache = tone_model
    manifest = annotated_manifest(tmp_path)
    args = ["evaluate", "--model", str(model), "--manifest", str(manifest), "--out", str(tmp_path / "r")]
    windows = ["--window", "0.5", "--hop", "0.25", "--min-duration", "0.6"] if fine else []
    code = main([*args, *windows, "--cache-dir", str(cache), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    seg = json.loads((tmp_path / "r" / "report.json").read_text())["segments"]
    assert seg["n_recordings"] == 2 and seg["frame"]["seconds"] == pytest.approx(24.0)
    assert seg["event"]["n_reference"] == 8
    if fine:
        assert seg["frame"]["accuracy"] > 0.95 and seg["event"]["f1"] == 1.0, seg
    else:  # windows as long as the sound in the training clips (in its card), not its 10 s ones
        card = json.loads((model / "audioclf.json").read_text())["segmenting"]
        assert seg["window_s"] == card["event_s"] < card["window_s"] < 10
        assert seg["hop_s"] == card["event_s"] / 4
        assert seg["frame"]["accuracy"] > 0.9, seg
    assert "segments:   2 recordings  frame accuracy" in out
    assert "## Segments" in (tmp_path / "r" / "report.md").read_text()
