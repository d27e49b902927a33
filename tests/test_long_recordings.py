"""Segments of long recordings with a model trained on short isolated clips (issue 31): the activity gate on
its own, then calls of three kinds trained as isolated clips and found in a long recording of other takes
separated by quiet gaps, through the command line; scored with the field's event metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

from audioclf.cli.main import main
from audioclf.errors import AudioclfError
from audioclf.evaluation.event_metrics import event_based
from audioclf.evaluation.segments import Segment
from audioclf.io.audio import load_audio
from audioclf.labelling.activity import ActivityOptions, Region, active_regions
from audioclf.labelling.surroundings import MAX_PIECES, Surroundings, quiet_pieces, unlike_background
from audioclf.model.novelty import Novelty, Precision

RATE = 16_000
QUIET = 0.001  # the gaps' noise: about -60 dBFS


def call(kind: str, seed: int) -> np.ndarray:
    """One take of a call: an up-sweep, a down-sweep or a warble, 0.3-0.5 s, its pitch and length jittered."""
    rng = np.random.default_rng(seed)
    seconds = rng.uniform(0.3, 0.5)
    t = np.arange(int(seconds * RATE)) / RATE
    shift = rng.uniform(0.9, 1.1)
    if kind == "up":
        phase = 2 * np.pi * shift * (500 * t + 1000 * t**2 / seconds / 2)
    elif kind == "down":
        phase = 2 * np.pi * shift * (2000 * t - 1200 * t**2 / seconds / 2)
    else:
        phase = 2 * np.pi * shift * (1000 * t + 20 * np.sin(2 * np.pi * 12 * t))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    wave = 0.4 * rng.uniform(0.5, 1.0) * np.sin(phase) * fade + 0.01 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


KINDS = ("up", "down", "warble")


def quiet(seconds: float, seed: int) -> np.ndarray:
    return (QUIET * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def long_recording(path: Path, n_events: int, seed: int) -> list[Segment]:
    """Takes never trained on, with quiet gaps of 0.6-1.5 s; returns the truth."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [quiet(1.0, seed)], [], 1.0
    for k in range(n_events):
        kind = KINDS[k % 3]
        wave = call(kind, 10_000 + seed * 100 + k)
        truth.append(Segment(t, t + len(wave) / RATE, kind, 1.0, 1.0))
        gap = rng.uniform(0.6, 1.5)
        parts += [wave, quiet(gap, seed + k + 1)]
        t += len(wave) / RATE + gap
    write_audio(path, np.concatenate(parts), RATE)
    return truth


@pytest.fixture(scope="module")
def calls_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A probe (built-in encoder) trained on isolated takes only: 8 takes of each call, each its own group."""
    root = tmp_path_factory.mktemp("calls")
    rows = []
    for kind in KINDS:
        for take in range(8):
            path = write_audio(root / f"{kind}_{take}.wav", call(kind, take * 7 + len(kind)), RATE)
            rows.append({"path": str(path), "label": kind, "group": f"take{take}"})
    with (root / "train.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    args = ["train", "--manifest", str(root / "train.csv"), "--out", str(root / "model"), "--encoder", "builtin"]
    assert main([*args, "--folds", "2", "--cache-dir", str(root / "cache"), "--quiet"]) == 0
    return root / "model", root / "cache"


def test_the_activity_gate_finds_bursts_in_quiet_and_in_noise() -> None:
    bursts = [(1.0, 1.4), (2.4, 2.7), (3.9, 4.5)]
    x = quiet(5.5, 0)
    for a, b in bursts:
        first, last = round(a * RATE), round(b * RATE)
        x[first:last] += tone(900, 1.0)[: last - first]
    found = active_regions(x, RATE)
    assert len(found) == 3
    for r, (a, b) in zip(found, bursts, strict=True):
        assert abs(r.start_s - a) <= 0.08 and abs(r.end_s - b) <= 0.1  # at the hop, padded 50 ms
    noisy = x + (0.035 * np.random.default_rng(1).standard_normal(len(x))).astype(np.float32)  # about 20 dB SNR
    in_noise = active_regions(noisy, RATE)
    assert len(in_noise) == 3 and all(abs(r.start_s - a) <= 0.1 for r, (a, _) in zip(in_noise, bursts, strict=True))
    assert active_regions(tone(440, 3.0), RATE)[0].duration_s == pytest.approx(3.0)  # one steady sound
    assert active_regions(np.zeros(RATE, np.float32), RATE) == []  # silence: nothing happens
    with pytest.raises(AudioclfError, match="0 < low <= high < 1"):
        ActivityOptions(high=0.1, low=0.2)


def test_events_of_a_long_recording_are_found_by_a_model_of_isolated_clips(
    calls_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = calls_model
    card = json.loads((model / "audioclf.json").read_text())["segmenting"]
    assert card["segmenter"] == "events" and 0.3 < card["clip_s"] < 0.5 and card["window_s"] < 1.5
    truth = long_recording(tmp_path / "long.wav", 15, seed=1)
    silent = tmp_path / "quiet.wav"
    write_audio(silent, quiet(60.0, 5), RATE)
    args = ["predict", "--model", str(model), str(tmp_path / "long.wav"), str(silent), "--segments", "--json"]
    assert main([*args, "--cache-dir", str(cache), "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = [Segment(s["start_s"], s["end_s"], s["label"], 1.0, 1.0) for s in lines[0]["segments"]]
    scores = event_based(truth, found, t_collar=0.5, evaluate_offset=False)
    assert scores.recall >= 0.9 and scores.precision >= 0.9, (scores.to_dict(), found)
    assert lines[1]["source"].endswith("quiet.wav") and not lines[1].get("segments")  # quiet audio: no events
    windows = [*args, "--segmenter", "windows", "--cache-dir", str(cache), "--quiet"]
    assert main(windows) == 0  # the other segmenter stays at hand; it labels the gaps too
    slid = json.loads(capsys.readouterr().out.splitlines()[0])["segments"]
    assert sum(s["end_s"] - s["start_s"] for s in slid) > sum(s.end_s - s.start_s for s in found)


def test_a_minimum_confidence_leaves_the_events_of_trained_calls_labelled(
    calls_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = calls_model
    assert (model / "context_head.safetensors").is_file() and (model / "context_novelty.safetensors").is_file()
    truth = long_recording(tmp_path / "long.wav", 9, seed=2)
    args = ["predict", "--model", str(model), str(tmp_path / "long.wav"), "--segments", "--json"]
    assert main([*args, "--min-confidence", "auto", "--cache-dir", str(cache), "--quiet"]) == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    known = [Segment(s["start_s"], s["end_s"], s["label"], 1.0, 1.0) for s in segments if s["label"] != "unknown"]
    # regions are clips in context: judged against the detector that heard clips in context, not the clean one
    assert event_based(truth, known, t_collar=0.5, evaluate_offset=False).recall >= 0.8, segments


def busy_background(seconds: float, seed: int) -> np.ndarray:
    """A background that comes and goes (bursts of hiss and rumble, 15-30 dB under the calls), over the quiet
    floor: what the level gate alone takes for events."""
    rng = np.random.default_rng(seed)
    x = quiet(seconds, seed)
    t = rng.uniform(0.0, 0.3)
    while t < seconds - 0.1:
        n = int(rng.uniform(0.1, 0.5) * RATE)
        first = int(t * RATE)
        burst = np.cumsum(rng.standard_normal(n)) if rng.random() < 0.5 else rng.standard_normal(n)
        burst = burst - np.convolve(burst, np.ones(32) / 32, mode="same")  # no slow drift: a rumble or a hiss
        burst *= rng.uniform(0.01, 0.03) / (np.std(burst) + 1e-9)
        x[first : first + n] += burst[: len(x) - first].astype(np.float32)
        t += n / RATE + rng.uniform(0.3, 1.2)
    return x


def test_a_background_the_model_never_heard_is_not_an_event(
    calls_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each recording's own quiet parts teach what its background sounds like: bursts of it are not events, and
    the calls in it are still found."""
    model, cache = calls_model
    truth = long_recording(tmp_path / "calls.wav", 12, seed=3)
    calls = load_audio(tmp_path / "calls.wav")
    write_audio(tmp_path / "in-background.wav", calls + busy_background(len(calls) / RATE, 7), RATE)
    write_audio(tmp_path / "background.wav", busy_background(60.0, 8), RATE)
    paths = [str(tmp_path / "in-background.wav"), str(tmp_path / "background.wav")]
    args = ["predict", "--model", str(model), *paths, "--segments", "--json", "--cache-dir", str(cache), "--quiet"]
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = [Segment(s["start_s"], s["end_s"], s["label"], 1.0, 1.0) for s in lines[0]["segments"]]
    scores = event_based(truth, found, t_collar=0.5, evaluate_offset=False)
    # without what the recording's quiet parts teach, bursts of background become calls (precision 0.73, and
    # two calls in a minute of background alone); without "a sure, typical call is a call", calls inside
    # bursts were refused as novel (recall 0.50)
    assert scores.precision >= 0.9 and scores.recall >= 0.8, (scores.to_dict(), found)
    assert len(lines[1].get("segments") or []) <= 1, lines[1]["segments"]


def test_quiet_pieces_and_the_background_rule() -> None:
    regions = [Region(1.0, 1.5), Region(1.6, 2.0), Region(4.0, 4.4)]
    pieces = quiet_pieces(regions, 6.0, 0.5)
    assert all(p.duration_s >= 0.2 for p in pieces)  # the 0.1 s between the first two regions is left out
    assert all(p.end_s <= r.start_s - 0.05 or p.start_s >= r.end_s + 0.05 for p in pieces for r in regions)
    assert pieces[0].start_s == 0.0 and pieces[-1].end_s == 6.0
    assert sum(p.duration_s for p in pieces) == pytest.approx(0.95 + 1.9 + 1.55)  # 50 ms kept from each region
    assert len(quiet_pieces([], 3600.0, 0.4)) == MAX_PIECES  # an hour of quiet: pieces spread over it
    classes = np.eye(3)[:2]  # two trained classes along the first two axes
    early, late = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])  # the background changes half way
    quiet_features = np.stack([early] * 8 + [late] * 8)
    times = np.arange(16.0)
    around = Surroundings(quiet_features, times, classes, np.array([True, True]))
    probe = np.array([[0.6, 0.0, 0.8], [0.6, 0.0, 0.8], [0.8, 0.0, 0.6], [0.6, 0.0, 0.8]])
    unsure_rows = np.full((4, 2), 0.5)
    sure_rows = np.tile([1.0, 0.0], (4, 1))
    # like the early background at 2 s; later the background is the second class's direction, so it is not
    at = np.array([2.0, 14.0, 2.0, 2.0])
    assert around.like_background(probe, unsure_rows, at).tolist() == [True, False, False, True]
    # a row the model is sure of and that is typical of its class (0.6 of the class's own spread) is a trained
    # sound, wherever it is
    assert around.like_background(probe, sure_rows, at).tolist() == [False, False, False, False]
    unsure = np.full((16, 2), 0.5)
    sounds = np.array([True, True])
    assert Surroundings.learn(quiet_features[:1], times[:1], unsure[:1], _novelty(classes), sounds) is None
    sure = np.tile([0.0, 1.0], (16, 1))  # the late pieces are the second class, heard quietly: not background
    kept = Surroundings.learn(quiet_features, times, sure, _novelty(classes), sounds)
    assert kept is not None and kept.times_s.tolist() == times[:8].tolist()
    # unless that class is the model's own background: then it is background
    kept = Surroundings.learn(quiet_features, times, sure, _novelty(classes), np.array([True, False]))
    assert kept is not None and len(kept.times_s) == 16


def _novelty(means: np.ndarray) -> Novelty:
    return Novelty(means, Precision(np.zeros((0, means.shape[1])), np.zeros(0), 1.0), 1.0)


def test_the_stretches_of_a_long_region_that_are_not_background() -> None:
    starts = np.arange(0.0, 9.5, 0.25)  # 1 s windows every 0.25 s over a 10 s region
    durations = np.ones_like(starts)
    centres = starts + 0.5
    aside = ~(((centres > 2.0) & (centres < 3.0)) | ((centres > 3.6) & (centres < 4.5)) | (centres > 8.0))
    spans = unlike_background(Region(0.5, 9.0), starts, durations, aside)
    # windows that overlap are one stretch; the last is clipped to the region
    assert [(s.start_s, s.end_s) for s in spans] == [(1.75, 4.75), (7.75, 9.0)]
    assert unlike_background(Region(0.0, 10.0), starts, durations, np.ones_like(aside)) == []
    lone = np.ones_like(aside)
    lone[10] = False  # one window alone is not a stretch of sound
    assert unlike_background(Region(0.0, 10.0), starts, durations, lone) == []
