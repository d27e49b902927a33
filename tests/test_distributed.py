"""--ray on a local Ray instance: embed fills the same cache entries as a single-process run and survives a worker
being killed; fetch downloads with real yt-dlp from a local HTTP server into the cache a single-machine fetch
then finds; train embeds on Ray and trains from the cache. Ray is optional; these tests run where it is
installed (the dev extras install it)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tone_dataset, tone, write_audio

from audioclf.cli.main import main
from audioclf.encoders.loader import BuiltinEncoder
from audioclf.encoders.spec import TFIDF, ModelSpec
from audioclf.extraction.embed import embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import load_manifest
from audioclf.speech.features import FeatureMode

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _manifest(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    rows = ["path"]
    for i in range(n):
        rows.append(
            str(write_audio(root / f"c{i:02d}.wav", tone(150 + 40 * i, 0.5 + 0.1 * (i % 5), noise=0.1, seed=i), 16_000))
        )
    bad = root / "broken.wav"
    bad.write_bytes(b"not audio at all")
    rows.append(str(bad))
    manifest = root / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_ray_run_fills_the_same_cache_as_one_process(local_ray: object, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data", 30)
    cache, failures = tmp_path / "cache", tmp_path / "failures.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["embed", "--manifest", str(manifest), "--encoder", "builtin", "--cache-dir", str(cache), "--ray"]
        assert main([*args, "--failures", str(failures), "--quiet"]) == 0
    assert re.search(r"on Ray: embedded 30 recordings \(0 from cache.*1 failed", out.getvalue()), out.getvalue()
    assert _worker_items(out.getvalue()) == 31  # every row went through some worker, once
    assert "broken.wav" in failures.read_text()

    enc, windows = BuiltinEncoder(), WindowOptions()
    items = load_manifest(manifest, require_labels=False)
    from_ray = embed_items(items, enc, EmbeddingCache(cache, enc.identity, windows), windows, progress=False)
    local = embed_items(items, enc, EmbeddingCache(tmp_path / "local", enc.identity, windows), windows, progress=False)
    assert from_ray.n_cached == 30 and from_ray.audio_s == 0  # every entry was there, under the same keys
    for (_, a), (_, b) in zip(from_ray.embedded, local.embedded, strict=True):
        np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-6)


def _worker_items(output: str) -> int:
    """The total of the per-worker table's items column (rows are ``<node ip>:<pid>``)."""
    rows = re.findall(r"^\d+\.\d+\.\d+\.\d+:\d+\s+\d+\s+(\d+)\s", output, flags=re.M)
    assert rows, output
    return sum(int(n) for n in rows)


def _run(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0
    return out.getvalue()


@pytest.fixture()
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _url_manifest(
    file_server: tuple[str, Path], clips: list[tuple[str, np.ndarray]], missing: str, tmp_path: Path
) -> Path:
    """A manifest of URLs: ``clips`` written where the local server serves them, and one it does not have."""
    base, root = file_server
    for name, samples in clips:
        write_audio(root / name, samples, 16_000)
    manifest = tmp_path / "urls.csv"
    manifest.write_text("url\n" + "\n".join([f"{base}/{missing}"] + [f"{base}/{n}" for n, _ in clips]) + "\n")
    return manifest


def test_fetch_on_ray_fills_the_cache_a_local_fetch_finds(
    local_ray: object, file_server: tuple[str, Path], tmp_path: Path
) -> None:
    clips = [(f"clip{i}.wav", tone(200 + 50 * i, 0.3)) for i in range(12)]
    manifest = _url_manifest(file_server, clips, "missing.wav", tmp_path)
    common = ["fetch", "--manifest", str(manifest), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    out = _run(*common, "--failures", str(tmp_path / "f.csv"), "--ray", "--ray-workers", "2")
    assert "12 fetched (12 downloaded now, 0 already cached), 1 failed" in out, out
    assert _worker_items(out) == 13
    assert "missing.wav" in (tmp_path / "f.csv").read_text()
    media = sorted((tmp_path / "cache" / "media").glob("*.wav"))
    assert len(media) == 12 and all(len(p.stem) == 64 for p in media)  # hashed names, as on one machine
    again = _run(*common, "--failures", str(tmp_path / "g.csv"))  # one machine, same cache: nothing to download
    assert "12 fetched (0 downloaded now, 12 already cached), 1 failed" in again, again


def test_embed_on_ray_downloads_urls_while_it_encodes(
    local_ray: object, file_server: tuple[str, Path], tmp_path: Path
) -> None:
    clips = [(f"u{i}.wav", tone(180 + 40 * i, 0.4, noise=0.1, seed=i)) for i in range(20)]
    manifest = _url_manifest(file_server, clips, "gone.wav", tmp_path)
    common = [
        "embed",
        "--manifest",
        str(manifest),
        "--encoder",
        "builtin",
        "--cache-dir",
        str(tmp_path / "c"),
        "--quiet",
    ]
    out = _run(*common, "--ray", "--ray-workers", "2")
    assert re.search(r"on Ray: embedded 20 recordings \(0 from cache, 20 downloaded.*1 failed", out), out
    assert _worker_items(out) == 21
    again = _run(*common)  # one machine, same cache: every download and every embedding is found
    assert "embedded 20 recordings (20 from cache), 1 failed" in again, again


def test_train_on_ray_embeds_there_and_trains_from_the_cache(local_ray: object, tmp_path: Path) -> None:
    manifest = make_tone_dataset(tmp_path / "tones")
    (tmp_path / "tones" / "broken.wav").write_bytes(b"RIFF but not really")
    with open(manifest, "a", newline="") as fh:
        csv.writer(fh).writerow(["broken.wav", "low", "", "spk0"])
    out = _run(
        "train",
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "model"),
        "--encoder",
        "builtin",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "5",
        "--ray",
        "--quiet",
    )
    assert re.search(r"^ray +embedded 27 recordings \(0 from cache.*, 1 failed", out, re.M), out
    assert re.search(r"^data +embedded 27 recordings \(27 from cache\), 1 failed", out, re.M), out  # no recompute
    with open(tmp_path / "model" / "failures.csv", newline="") as fh:
        failed = [row["source"] for row in csv.DictReader(fh)]
    assert [Path(s).name for s in failed] == ["broken.wav"]  # Ray's failure is listed once, not retried here
    assert (tmp_path / "model" / "head.safetensors").is_file()


def test_a_killed_worker_loses_only_its_chunk(local_ray: object, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import threading
    import time

    from audioclf.extraction.ray import RayOptions, embed_on_ray

    manifest = _manifest(tmp_path / "data", 160)
    cache = tmp_path / "cache"
    killed: list[float] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(cache.rglob("*.npz"))) < 16:
            time.sleep(0.01)
        pids = subprocess.run(["pgrep", "-f", "ray::_EmbedActor"], capture_output=True, text=True).stdout.split()
        if pids:
            os.kill(int(pids[0]), signal.SIGKILL)
            killed.append(time.monotonic())

    threading.Thread(target=kill_one_worker, daemon=True).start()
    items = load_manifest(manifest, require_labels=False)
    run = embed_on_ray(items, "builtin", "auto", cache, WindowOptions(), options=RayOptions(), progress=False)
    result = run.result
    assert killed and killed[0] < time.monotonic() - 0.05, "no worker was killed while the run was going on"
    assert result.n_embedded == 160 and [f.item.source for f in result.failures] == [items[-1].source]
    assert len(list(cache.rglob("*.npz"))) == 160
    assert sum(w.items for w in run.workers) == 161  # the killed worker's chunk was counted once, when it was redone


@pytest.mark.parametrize(
    ("address", "reason"), [("127.0.0.1:1", "cannot reach the cluster"), ("garbage", "not an address")]
)
def test_an_unreachable_cluster_fails_in_seconds(address: str, reason: str) -> None:
    from audioclf.errors import AudioclfError
    from audioclf.extraction.ray import _check_reachable

    with pytest.raises(AudioclfError, match=reason):
        _check_reachable(address)  # Ray's own ray.init would retry its GCS connection for minutes


@pytest.mark.parametrize(
    ("encoder", "cache", "reason"),
    [
        ("hf:/nonexistent/model", "cache", "on Ray worker .*no such model folder"),
        ("builtin", "a-file/cache", "cannot write the cache at"),
    ],
)
def test_a_worker_that_cannot_work_stops_the_run_with_one_line(
    local_ray: object, tmp_path: Path, capsys: pytest.CaptureFixture[str], encoder: str, cache: str, reason: str
) -> None:
    manifest = _manifest(tmp_path / "data", 4)
    (tmp_path / "a-file").write_text("x")
    args = ["embed", "--manifest", str(manifest), "--encoder", encoder, "--cache-dir", str(tmp_path / cache), "--ray"]
    assert main([*args, "--quiet"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert re.search(reason, line), line


def test_train_on_ray_transcribes_on_the_workers(local_ray: object, tiny_ctc: Path, tmp_path: Path) -> None:
    from audioclf.extraction.ray import embed_on_ray
    from audioclf.speech.text_features import FeatureOptions

    manifest = _manifest(tmp_path / "data", 12)
    items = load_manifest(manifest, require_labels=False)
    cache = tmp_path / "cache"
    features = FeatureOptions(
        FeatureMode.TRANSCRIPT, None, ModelSpec(TFIDF)
    )  # the CTC encoder transcribes in its embedding pass
    run = embed_on_ray(items, f"hf:{tiny_ctc}", "auto", cache, WindowOptions(), features=features, progress=False)
    assert run.result.n_embedded == 12
    assert len(list((cache / "transcripts").rglob("*.json"))) == 12  # the driver will find every transcript
    labelled = tmp_path / "labelled.csv"
    rows = load_manifest(manifest, require_labels=False)[:-1]
    labelled.write_text(
        "path,label,group\n" + "".join(f"{r.source},{'ab'[i % 2]},g{i % 4}\n" for i, r in enumerate(rows))
    )
    out = _run(
        "train",
        "--manifest",
        str(labelled),
        "--out",
        str(tmp_path / "m"),
        "--encoder",
        f"hf:{tiny_ctc}",
        "--features",
        "transcript",
        "--text-encoder",
        "tfidf",
        "--cache-dir",
        str(cache),
        "--epochs",
        "3",
        "--ray",
        "--quiet",
    )
    assert re.search(r"^ray +embedded 12 recordings \(12 from cache\)", out, re.M), out  # nothing left to do
    assert (tmp_path / "m" / "transcripts.csv").is_file()


def test_index_on_ray_embeds_there_and_writes_the_store_here(local_ray: object, tmp_path: Path) -> None:
    manifest = make_tone_dataset(tmp_path / "tones")
    (tmp_path / "tones" / "broken.wav").write_bytes(b"RIFF but not really")
    with open(manifest, "a", newline="") as fh:
        csv.writer(fh).writerow(["broken.wav", "low", "", "spk0"])
    args = ["index", "--manifest", str(manifest), "--out", str(tmp_path / "idx"), "--encoder", "builtin"]
    out = _run(*args, "--cache-dir", str(tmp_path / "cache"), "--ray", "--quiet")
    # every window was embedded on Ray: this process only read the cache and wrote the store
    assert "added 36 recordings (36 windows; 0 already indexed, 36 from the embedding cache), 1 failed" in out, out
    again = _run(*args, "--cache-dir", str(tmp_path / "cache"), "--quiet")
    assert "added 0 recordings (0 windows; 36 already indexed" in again, again
