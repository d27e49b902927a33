"""Inputs that used to end in ``internal error: …`` or a hang: each is now one line naming what to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tone, write_audio

from audioclf.cli.main import main
from audioclf.errors import ManifestError
from audioclf.io.manifest import load_manifest

AUDIOCLF = [sys.executable, "-m", "audioclf"]


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err.strip()


def test_manifest_encodings(tmp_path: Path) -> None:
    write_audio(tmp_path / "café.wav", tone(440.0, 0.3), 16_000)
    text = "path,label\ncafé.wav,dog\n"
    (tmp_path / "utf16.csv").write_bytes(text.encode("utf-16"))  # with its BOM, as spreadsheets export it
    assert [i.label for i in load_manifest(tmp_path / "utf16.csv")] == ["dog"]
    (tmp_path / "latin1.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin1.csv:2: not UTF-8 text \(byte 0xe9\); save the manifest as UTF-8"):
        load_manifest(tmp_path / "latin1.csv")
    (tmp_path / "long.csv").write_text('path,label\n"a.wav,dog\n' + "x" * 200_000 + "\n")
    with pytest.raises(ManifestError, match=r"long.csv:\d+: malformed CSV \(field larger than field limit"):
        load_manifest(tmp_path / "long.csv")
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n")
    with pytest.raises(ManifestError, match=r"deep.jsonl:1: "):
        load_manifest(tmp_path / "deep.jsonl")


def test_a_duplicate_row_names_no_python_none(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", tone(440.0, 0.3), 16_000)
    (tmp_path / "m.csv").write_text("path,label,split\na.wav,dog,\na.wav,dog,test\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "m.csv")
    assert "None" not in str(caught.value) and "dog/(none) there vs dog/test here" in str(caught.value)


@pytest.mark.parametrize("layer", ["99", "-8", "foo", "3.5"])
def test_a_layer_the_encoder_lacks_is_refused_before_embedding(
    layer: str, tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    args = ["train", "--manifest", str(tone_dataset), "--out", str(tmp_path / "m"), "--encoder", f"hf:{tiny_wav2vec2}"]
    code, err = _error(capsys, *args, "--layer", layer, "--cache-dir", str(cache))
    assert code == 2 and err.startswith(f"error: layer {layer}") and "(see --layer)" in err, err
    assert len(err.splitlines()) == 1
    assert not list(cache.rglob("*.npz"))  # nothing was embedded first


def test_builtin_has_one_layer(tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--manifest", str(tone_dataset), "--out", str(tmp_path / "m"), "--encoder", "builtin"]
    code, err = _error(capsys, *args, "--layer", "99", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and err == "error: layer 99: builtin has only one layer: use auto or last (see --layer)", err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--window", "inf"], "--window: 'inf': use a finite number"),
        (["--window", "0.0001"], "window 0.0001 s: use 0.1 s to 86400 s"),
        (["--window", "1e308"], "window 1e+308 s: use 0.1 s to 86400 s"),
        (["--window", "1", "--hop", "0.001"], "hop 0.001 s: use 0.05 s"),
        (["--top-k", "0"], "--top-k: 0 is too small: use 1 or more"),
        (["--jobs", "0"], "--jobs: 0 is too small: use 1 or more"),
    ],
)
def test_predict_numbers_out_of_range(
    flags: list[str], expected: str, tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_audio(tmp_path / "a.wav", tone(440.0, 0.6), 16_000)
    try:
        code, err = _error(capsys, "predict", "--model", str(tone_model[0]), str(clip), *flags)
    except SystemExit as exc:  # argparse: usage, then one error line
        code, err = int(exc.code or 0), capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and expected in err, err


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--folds", "0"], ["--folds", "1"], ["--test-size", "nan"]])
def test_train_numbers_out_of_range(flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["train", "--manifest", "m.csv", "--out", str(tmp_path / "m"), *flags])
    assert caught.value.code == 2 and flags[0] in capsys.readouterr().err


def test_pipes_and_devices_are_failed_inputs_not_hangs(
    tone_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_audio(tmp_path / "good.wav", tone(220.0, 0.6), 16_000)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    args = ["predict", "--model", str(tone_model[0]), str(good), str(fifo), "/dev/zero", "--json"]
    code = main([*args, "--cache-dir", str(tmp_path / "c")])
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 3
    assert [o["label"] for o in out if "label" in o] == ["low"]
    errors = sorted(o["error"] for o in out if "error" in o)
    assert len(errors) == 2 and all("not a regular file (a pipe, device or socket)" in e for e in errors), errors


def _limited(limit_bytes: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def test_safetensors_on_a_full_disk_is_an_os_error(tmp_path: Path) -> None:
    script = (
        "import numpy as np; from safetensors.numpy import save_file; from audioclf.fileio import atomic_path\n"
        "from pathlib import Path\n"
        "try:\n"
        f"    with atomic_path(Path({str(tmp_path / 'w.safetensors')!r})) as tmp:\n"
        "        save_file({'a': np.zeros(100_000, np.float32)}, str(tmp))\n"
        "except OSError as exc:\n"
        "    print('OSError', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=lambda: _limited(4096), check=True
    )
    assert done.stdout.startswith("OSError ") and "w.safetensors: cannot write" in done.stdout, done
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_train_on_a_full_disk_is_one_line(tone_model: tuple[Path, Path], tone_dataset: Path, tmp_path: Path) -> None:
    _, cache = tone_model  # already embedded: only the model's own files are written
    args = ["train", "--manifest", str(tone_dataset), "--out", str(tmp_path / "m"), "--encoder", "builtin"]
    done = subprocess.run(
        [*AUDIOCLF, *args, "--cache-dir", str(cache), "--quiet", "--epochs", "5"],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limited(2048),
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith("error: ") and "internal error" not in done.stderr, done
    assert not (tmp_path / "m" / "audioclf.json").exists()


def test_a_closed_pipe_ends_quietly(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    clips = [write_audio(tmp_path / f"{k}.wav", tone(220.0 * (k + 1), 0.6), 16_000) for k in range(3)]
    proc = subprocess.Popen(
        [*AUDIOCLF, "predict", "--model", str(tone_model[0]), *map(str, clips), "--cache-dir", str(tone_model[1])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before the first line, as `| head -0` would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and "error" not in err, err
