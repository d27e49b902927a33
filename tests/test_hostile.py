"""The hostile-input table: every case people will feed the tool, each a test.

A bad item gets one line that names it and says what is wrong; in a multi-item run it is reported, skipped
and counted, and every other item still comes out right. Crash, concurrency and security cases are in
``test_crashes.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tracemalloc
import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import make_tone_dataset, tone, write_audio

from audioclf.cli.main import main
from audioclf.errors import ManifestError
from audioclf.io.audio import SAMPLE_RATE_HZ, iter_windows
from audioclf.io.download import FetchOptions, fetch_all
from audioclf.io.manifest import Item, load_manifest

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _wav_bytes(path: Path, data: bytes, *, rate: int = 16_000, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def _video(path: Path) -> Path:
    """An MP4 with a video stream first and an AAC audio stream second."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16_000, layout="mono")
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        samples = tone(440, 1.0).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = 16_000
        container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    image.imsave(path, np.zeros((4, 4)))
    return path


# name -> (how to make it in a folder, a fragment of the one-line reason it is skipped with)
BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "random bytes with an audio extension": (
        lambda d: _write(d / "noise.wav", np.random.default_rng(0).bytes(4000)),
        "cannot decode audio",
    ),
    "empty file (0 bytes)": (lambda d: _write(d / "empty.mp3", b""), "cannot decode audio"),
    "valid file with zero samples": (lambda d: _wav_bytes(d / "zero.wav", b""), "contains no audio samples"),
    "a PNG image": (lambda d: _png(d / "picture.png"), "no audio stream"),
    "a text file": (lambda d: _write(d / "notes.txt", b"not audio\n" * 50), "no audio stream"),
    "a missing file": (lambda d: d / "missing.wav", "file not found; fix the path or remove the row"),
    "a dangling symlink": (lambda d: _symlink(d / "gone.wav", d / "nowhere.wav"), "file not found"),
    "a folder named like audio": (lambda d: _mkdir(d / "folder.wav"), "is a folder, not an audio file"),
}

# name -> how to make it: odd but valid audio that must embed like any other file
ODD: dict[str, Callable[[Path], Path]] = {
    "0.05 s clip": lambda d: write_audio(d / "short.wav", tone(500, 0.05), 16_000),
    "pure silence": lambda d: write_audio(d / "silence.flac", np.zeros(16_000, np.float32), 16_000),
    "8-channel audio": lambda d: write_audio(d / "eight.wav", tone(300, 0.6), 16_000, channels=8),
    "192 kHz audio": lambda d: write_audio(d / "hires.wav", tone(300, 0.6, 192_000), 192_000),
    "8 kHz audio": lambda d: write_audio(d / "phone.wav", tone(300, 0.6, 8_000), 8_000),
    "8-bit WAV": lambda d: write_audio(d / "u8.wav", tone(300, 0.6), 16_000, codec="pcm_u8"),
    "24-bit WAV": lambda d: write_audio(d / "s24.wav", tone(300, 0.6), 16_000, codec="pcm_s24le"),
    "float WAV": lambda d: write_audio(d / "f32.wav", tone(300, 0.6), 16_000, codec="pcm_f32le"),
    "video file (its audio is used)": lambda d: _video(d / "clip.mp4"),
    "truncated WAV (the intact part is used)": lambda d: _write(
        d / "cut.wav", write_audio(d / "full.wav", tone(300, 1.0), 16_000).read_bytes()[:9000]
    ),
    "path with spaces": lambda d: write_audio(_mkdir(d / "my recordings") / "take 1.wav", tone(250, 0.6), 16_000),
    "unicode path": lambda d: write_audio(_mkdir(d / "grabación") / "día-音.flac", tone(350, 0.6), 16_000),
    "leading dash": lambda d: write_audio(d / "-rf.wav", tone(450, 0.6), 16_000),
    "symlink to a file": lambda d: _symlink(d / "link.wav", write_audio(d / "target.wav", tone(550, 0.6), 16_000)),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One `audioclf embed` over good files, every BAD case and every ODD case, as a user would run it."""
    d = tmp_path_factory.mktemp("hostile")
    good = [write_audio(d / f"good{i}.wav", tone(200 + 100 * i, 0.7), 16_000) for i in range(3)]
    paths = {name: make(d) for name, (make, _) in BAD.items()} | {name: make(d) for name, make in ODD.items()}
    manifest = d / "m.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path"])
        writer.writerows([[str(p)] for p in [*good, *paths.values()]])
    failures = d / "failures.csv"
    args = ["embed", "--manifest", str(manifest), "--encoder", "builtin", "--cache-dir", str(d / "cache")]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        code = main([*args, "--failures", str(failures), "--quiet"])
    with open(failures, newline="", encoding="utf-8") as fh:
        reasons = {row["source"]: row for row in csv.DictReader(fh)}
    return {"code": code, "paths": paths, "reasons": reasons, "n_good": len(good) + len(ODD), "out": stdout.getvalue()}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_is_reported_by_name_and_skipped(table_run: dict[str, object], case: str) -> None:
    paths, reasons = table_run["paths"], table_run["reasons"]
    assert isinstance(paths, dict) and isinstance(reasons, dict)
    row = reasons[str(Path(paths[case]).resolve())]
    assert BAD[case][1] in row["reason"] and "\n" not in row["reason"]
    assert row["row"].startswith(str(Path(paths[case]).parent / "m.csv:"))  # names the manifest row


@pytest.mark.parametrize("case", list(ODD))
def test_odd_but_valid_audio_is_embedded(table_run: dict[str, object], case: str) -> None:
    paths, reasons = table_run["paths"], table_run["reasons"]
    assert isinstance(paths, dict) and isinstance(reasons, dict)
    assert str(Path(paths[case]).resolve()) not in reasons
    windows = [w.samples for w in iter_windows(paths[case])]
    assert len(windows) >= 1 and all(np.isfinite(w).all() for w in windows)


def test_the_run_counts_what_it_skipped(table_run: dict[str, object]) -> None:
    assert table_run["code"] == 0 and len(table_run["reasons"]) == len(BAD)  # type: ignore[arg-type]
    assert f"embedded {table_run['n_good']} recordings" in str(table_run["out"])
    assert f"{len(BAD)} failed" in str(table_run["out"])


def test_unreadable_file(tmp_path: Path) -> None:
    locked = write_audio(tmp_path / "locked.wav", tone(300, 0.5), 16_000)
    locked.chmod(0)
    manifest, failures = tmp_path / "m.csv", tmp_path / "failures.csv"
    manifest.write_text(f"path\n{locked}\n")
    cmd = [sys.executable, "-m", "audioclf", "embed", "--manifest", str(manifest), "--encoder", "builtin"]
    cmd += ["--cache-dir", str(tmp_path / "c"), "--failures", str(failures), "--quiet"]
    if ROOT:  # root reads any file: drop the two capabilities that let it (CI runs as root)
        if not shutil.which("setpriv"):
            pytest.skip("root can read a file without read permission, and setpriv is not there to stop it")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "not readable (Permission denied); fix its permissions" in failures.read_text()


def test_clip_shorter_than_the_models_receptive_field(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    short = write_audio(tmp_path / "blip.wav", tone(500, 0.005), 16_000)  # 80 samples; the tiny model needs 185
    ok = write_audio(tmp_path / "ok.wav", tone(500, 0.5), 16_000)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path\n{short}\n{ok}\n")
    failures = tmp_path / "f.csv"
    args = ["embed", "--manifest", str(manifest), "--encoder", f"hf:{tiny_wav2vec2}", "--failures", str(failures)]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert (
        "only 0.005 s of audio; this encoder needs at least 0.012 s" in failures.read_text()
        and "ok.wav" not in failures.read_text()
    )


def test_hours_long_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    hours = 1.0
    rate = 8_000
    n = int(hours * 3600 * rate)
    ramp = (np.arange(n) % 200 + 28).astype(np.uint8).tobytes()  # 8-bit: 29 MB on disk
    path = _wav_bytes(tmp_path / "long.wav", ramp, rate=rate, width=1)
    tracemalloc.start()
    total = 0
    for w in iter_windows(path):
        total += len(w.samples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total >= hours * 3600 * SAMPLE_RATE_HZ  # all of it, at 16 kHz (the last window overlaps)
    assert peak < 40e6  # the whole file as 16 kHz float32 would be 230 MB


# --- manifests ---------------------------------------------------------------------------------------------------

MANIFESTS = [
    ("", "found no header"),
    ("label\ndog\n", "must name a 'path'"),
    ("path\n{a}\n", "header has no 'label' column"),
    ("path,label\n{a},\n", "m.csv:2: empty label"),
    ("path,label,split\n{a},dog,holdout\n", "m.csv:2: unknown split 'holdout'"),
    ("path,label\n{a},dog\n{a},cat\n", "m.csv:3: {a} is also"),
    ("path,label\nftp://example.org/x.mp3,dog\n", "m.csv:2: ftp://example.org/x.mp3: only http and https"),
    ("path,label\nhttp:///nohost.mp3,dog\n", "m.csv:2: http:///nohost.mp3: malformed URL"),
    ("path,label,start\n{a},dog,soon\n", "m.csv:2: start 'soon' is not a number"),
    ("path,label\nclip\x00.wav,dog\n", "m.csv:2: the path contains a NUL character"),
]


@pytest.mark.parametrize(("text", "message"), MANIFESTS)
def test_bad_manifest_is_one_line_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    a = str(write_audio(tmp_path / "a.wav", tone(300, 0.3), 16_000))
    m = tmp_path / "m.csv"
    m.write_text(text.format(a=a))
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    assert message.format(a=a) in str(info.value) and "\n" not in str(info.value)


def test_repeated_rows_bom_and_windows_line_endings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = write_audio(tmp_path / "a.wav", tone(300, 0.3), 16_000)
    b = write_audio(tmp_path / "b.wav", tone(600, 0.3), 16_000)
    m = tmp_path / "m.csv"
    m.write_bytes(f"\ufeffpath,label\r\n{a},low\r\n{b},high\r\n./a.wav,low\r\n".encode())
    items = load_manifest(m)
    assert [(i.source, i.label) for i in items] == [(str(a), "low"), (str(b), "high")]
    assert "m.csv:4: repeats" in caplog.text


def test_label_with_one_example_is_trained_on_and_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_tone_dataset(tmp_path / "data", n_groups=4, per_group=2)
    lone = write_audio(tmp_path / "data" / "whistle.wav", tone(3000, 0.6), 16_000)
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write(f"{lone},whistle,,solo\n")
    out = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", "builtin", "--epochs", "3"]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert "['whistle'] occur in one group" in capsys.readouterr().err
    assert "whistle" in json.loads((out / "audioclf.json").read_text())["labels"]


def test_fewer_than_two_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_audio(tmp_path / "a.wav", tone(300, 0.3), 16_000)
    b = write_audio(tmp_path / "b.wav", tone(300, 0.4), 16_000)
    m = tmp_path / "m.csv"
    m.write_text(f"path,label\n{a},dog\n{b},dog\n")
    assert main(["train", "--manifest", str(m), "--out", str(tmp_path / "o"), "--encoder", "builtin"]) == 2
    assert "a classifier needs at least 2" in capsys.readouterr().err
    broken = tmp_path / "cat.wav"  # two labels, but only one with audio that decodes
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    m.write_text(f"path,label\n{a},dog\n{b},dog\n{broken},cat\n")
    args = ["train", "--manifest", str(m), "--out", str(tmp_path / "o"), "--encoder", "builtin"]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 2
    assert "found 1 label(s) ['dog'] with decodable audio; a classifier needs at least 2" in capsys.readouterr().err


def test_a_label_whose_files_all_fail_is_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_tone_dataset(tmp_path / "data", n_groups=3, per_group=2)
    broken = tmp_path / "data" / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write(f"{broken},ghost,,g9\n")
    out = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", "builtin", "--epochs", "3"]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert json.loads((out / "audioclf.json").read_text())["labels"] == ["high", "low", "mid"]
    assert "broken.wav" in (out / "failures.csv").read_text()


# --- URLs --------------------------------------------------------------------------------------------------------


def test_unreachable_host_is_reported_with_its_row(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/clip.wav"
    options = FetchOptions(cache_dir=tmp_path / "cache", retries=1, backoff_s=0.01, socket_timeout_s=2)
    (result,) = fetch_all([Item(url, "x", None, "", "m.csv:2")], options)
    assert result.error is not None and url in result.error and "refused" in result.error.lower()
    assert result.item.where == "m.csv:2"


# --- models ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("model")
    manifest = make_tone_dataset(d / "data", n_groups=3, per_group=2)
    out = d / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", "builtin", "--epochs", "3"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "--cache-dir", str(d / "cache"), "--quiet"]) == 0
    return out, manifest


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


MODEL_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "from another version": (
        lambda m: (m / "audioclf.json").write_text(json.dumps({"format": 99, "audioclf_version": "9.0"})),
        "model format 99 from audioclf 9.0 is not supported",
    ),
    "config without labels": (
        lambda m: (m / "audioclf.json").write_text(json.dumps({"format": 1})),
        "damaged or incompatible model config",
    ),
    "config not JSON": (lambda m: (m / "audioclf.json").write_text("{torn"), "damaged or incompatible model config"),
    "missing weights": (lambda m: (m / "head.safetensors").unlink(), "missing or damaged weights"),
    "truncated weights": (
        lambda m: (m / "head.safetensors").write_bytes((m / "head.safetensors").read_bytes()[:100]),
        "missing or damaged weights",
    ),
    "no config at all": (lambda m: (m / "audioclf.json").unlink(), "not an audioclf model"),
}


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_damaged_or_foreign_model_folder(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    model = _copy_model(trained[0], tmp_path / "m")
    damage, message = MODEL_DAMAGE[case]
    damage(model)
    clip = write_audio(tmp_path / "x.wav", tone(300, 0.5), 16_000)
    assert main(["predict", "--model", str(model), str(clip), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1 and str(model) in err


def test_evaluating_on_labels_the_model_never_saw(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_audio(tmp_path / "x.wav", tone(300, 0.5), 16_000)
    m = tmp_path / "other.csv"
    m.write_text(f"path,label\n{clip},bark\n")
    assert main(["evaluate", "--model", str(trained[0]), "--manifest", str(m), "--cache-dir", str(tmp_path)]) == 2
    assert "labels ['bark'] were not in the model's training labels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("encoder", "message"),
    [("wav2vec9", "unknown encoder 'wav2vec9'"), ("hf:/no/such/folder", "no such model folder")],
)
def test_encoder_that_does_not_exist(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], encoder: str, message: str
) -> None:
    args = ["train", "--manifest", str(trained[1]), "--out", str(tmp_path / "o"), "--encoder", encoder]
    assert main(args) == 2
    assert message in capsys.readouterr().err
