"""Crashes, full disks, two runs at once, and the security rules: nothing finished is lost, nothing torn is read."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tone_dataset, tone, write_audio

from audioclf.cli.main import main
from audioclf.encoders.loader import load_encoder
from audioclf.extraction.embed import embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import load_manifest

SRC = Path(__file__).resolve().parents[1] / "src" / "audioclf"
WINDOW = ["--window", "0.5", "--hop", "0.5"]


def _dataset(root: Path, n: int, seconds: float = 2.0) -> Path:
    """``n`` noisy tones, two labels, one group per file."""
    root.mkdir(parents=True)
    rows = ["path,label,group"]
    for i in range(n):
        path = write_audio(root / f"c{i:03d}.flac", tone(200 + 7 * i, seconds, noise=0.05, seed=i), 16_000)
        rows.append(f"{path},{'ab'[i % 2]},g{i}")
    manifest = root / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "embeddings").rglob("*.npz")) if (cache / "embeddings").exists() else []


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "audioclf", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen[bytes], ready: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready() and proc.poll() is None and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def _embedded(out: str) -> tuple[int, int]:
    found = re.search(r"embedded (\d+) recordings \((\d+) from cache", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def test_kill_9_during_embedding_then_rerun_reuses_every_finished_item(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    manifest = _dataset(tmp_path / "data", 300)
    cache = tmp_path / "cache"
    args = ["embed", "--manifest", str(manifest), "--encoder", f"hf:{tiny_wav2vec2}", "--cache-dir", str(cache)]
    _kill_when(_cli(*args, *WINDOW, "--quiet"), lambda: len(_entries(cache)) >= 20)
    finished = _entries(cache)
    assert 20 <= len(finished) < 300
    for entry in finished:  # every file that looks like an entry is a whole one
        with np.load(entry, allow_pickle=False) as data:
            assert data["embeddings"].shape[1:] == (3, 32)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, *WINDOW, "--quiet"]) == 0
    assert _embedded(out.getvalue()) == (300, len(finished))

    # and the resumed cache holds what one uninterrupted run computes
    enc = load_encoder(f"hf:{tiny_wav2vec2}").encoder
    windows = WindowOptions(0.5, 0.5)
    items = load_manifest(manifest)
    resumed = embed_items(items, enc, EmbeddingCache(cache, enc.identity, windows), windows, progress=False)
    fresh = embed_items(items, enc, EmbeddingCache(tmp_path / "fresh", enc.identity, windows), windows, progress=False)
    assert resumed.n_cached == 300
    for (_, a), (_, b) in zip(resumed.embedded, fresh.embedded, strict=True):
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)


def test_kill_9_during_training_then_rerun_completes(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    manifest = _dataset(tmp_path / "data", 200)
    cache, out = tmp_path / "cache", tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", f"hf:{tiny_wav2vec2}"]
    args += ["--cache-dir", str(cache), "--epochs", "3", *WINDOW]
    _kill_when(_cli(*args, "--quiet"), lambda: len(_entries(cache)) >= 20)
    assert not (out / "audioclf.json").exists()  # a killed run never leaves something that looks like a model
    finished = len(_entries(cache))

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main([*args, "--quiet"]) == 0  # no --force needed: there was no model
    assert _embedded(text.getvalue()) == (200, finished)
    assert json.loads((out / "audioclf.json").read_text())["labels"] == ["a", "b"]


def test_torn_checkpoint_is_a_clear_error(tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    args = ["train", "--mode", "finetune", "--manifest", str(tone_dataset), "--out", str(out)]
    args += ["--encoder", f"hf:{tiny_wav2vec2}", "--epochs", "2", "--stop-after", "1", "--cache-dir", str(tmp_path)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "--quiet"]) == 0
    (weights,) = (out / "checkpoint").glob("model.safetensors")
    weights.write_bytes(weights.read_bytes()[:200])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "--resume"]) == 2
    assert "damaged checkpoint" in err.getvalue() and "delete it to start over" in err.getvalue()


def _limited_file_size(limit_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def test_full_disk_stops_with_one_line_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    manifest = make_tone_dataset(tmp_path / "data", n_groups=2, per_group=1)
    cache, out = tmp_path / "cache", tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--encoder", "builtin", "--cache-dir", str(cache)]
    proc = subprocess.run(
        [sys.executable, "-m", "audioclf", *args],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limited_file_size(2000),
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"cannot write the cache at {cache}" in line and "too large" in line.lower()
    assert not list(cache.rglob("*.tmp")) and not _entries(cache) and not (out / "audioclf.json").exists()


def test_unwritable_output_folder(tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = ["train", "--manifest", str(tone_dataset), "--out", str(blocker / "model"), "--encoder", "builtin"]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert str(blocker) in line and "Not a directory" in line


@pytest.mark.parametrize("command", ["embed", "fetch"])
def test_a_cache_folder_under_a_file_stops_the_run_with_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = make_tone_dataset(tmp_path / "data", n_groups=2, per_group=1)
    if command == "fetch":  # a URL row: the download cache is where it fails (nothing is requested)
        manifest.write_text("url,label\nhttp://127.0.0.1:9/a.wav,x\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = [command, "--manifest", str(manifest), "--cache-dir", str(blocker / "cache"), "--quiet"]
    assert main(args + (["--encoder", "builtin"] if command == "embed" else [])) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert f"cannot write the cache at {blocker / 'cache'}" in line  # not one "Not a directory" per audio file


def test_two_runs_sharing_a_cache_compute_each_entry_once(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    manifest = _dataset(tmp_path / "data", 120)
    cache = tmp_path / "cache"
    args = ["embed", "--manifest", str(manifest), "--encoder", f"hf:{tiny_wav2vec2}", "--cache-dir", str(cache)]
    procs = [_cli(*args, *WINDOW, "--quiet") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
    counts = [_embedded(o.decode()) for o, _ in outs]
    assert all(total == 120 for total, _ in counts)
    computed = [total - cached for total, cached in counts]
    assert sum(computed) == 120 and len(_entries(cache)) == 120, computed  # none computed twice
    assert not list(cache.rglob("*.tmp"))


# --- security ----------------------------------------------------------------------------------------------------


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def _kw(call: ast.Call, name: str) -> str | None:
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("module", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_remote_code_and_no_pickle(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}
    for call in _calls(tree):
        assert _kw(call, "trust_remote_code") in (None, "False"), f"{module.name}: {ast.unparse(call)}"
        if _name(call).endswith("np.load") or (_name(call) == "load" and "np" in ast.unparse(call)):
            assert _kw(call, "allow_pickle") == "False", f"{module.name}: {ast.unparse(call)}"
        if _name(call) == "torch.load":
            assert _kw(call, "weights_only") == "True", f"{module.name}: {ast.unparse(call)}"
