"""embed --ray on a local Ray instance: the same cache entries as a single-process run, and it survives a worker
being killed. Ray is optional; these tests run where it is installed (the dev extras install it)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

from audioclf.audio import WindowOptions
from audioclf.cache import EmbeddingCache
from audioclf.cli import main
from audioclf.embed import embed_items
from audioclf.encoders import BuiltinEncoder
from audioclf.manifest import load_manifest

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
        rows.append(str(write_audio(root / f"c{i:02d}.wav", tone(150 + 40 * i, 0.5 + 0.1 * (i % 5), noise=0.1, seed=i),
                                    16_000)))  # fmt: skip
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
    assert "broken.wav" in failures.read_text()

    enc, windows = BuiltinEncoder(), WindowOptions()
    items = load_manifest(manifest, require_labels=False)
    from_ray = embed_items(items, enc, EmbeddingCache(cache, enc.identity, windows), windows, progress=False)
    local = embed_items(items, enc, EmbeddingCache(tmp_path / "local", enc.identity, windows), windows, progress=False)
    assert from_ray.n_cached == 30 and from_ray.audio_s == 0  # every entry was there, under the same keys
    for (_, a), (_, b) in zip(from_ray.embedded, local.embedded, strict=True):
        np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-6)


def test_a_killed_worker_loses_only_its_chunk(local_ray: object, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import threading
    import time

    from audioclf.distributed import RayOptions, embed_on_ray

    manifest = _manifest(tmp_path / "data", 160)
    cache = tmp_path / "cache"
    killed: list[float] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(cache.rglob("*.npz"))) < 16:
            time.sleep(0.01)
        pids = subprocess.run(["pgrep", "-f", "ray::_Worker"], capture_output=True, text=True).stdout.split()
        if pids:
            os.kill(int(pids[0]), signal.SIGKILL)
            killed.append(time.monotonic())

    threading.Thread(target=kill_one_worker, daemon=True).start()
    items = load_manifest(manifest, require_labels=False)
    result = embed_on_ray(items, "builtin", "auto", cache, WindowOptions(), options=RayOptions(), progress=False)
    assert killed and killed[0] < time.monotonic() - 0.05, "no worker was killed while the run was going on"
    assert result.n_embedded == 160 and [f.item.source for f in result.failures] == [items[-1].source]
    assert len(list(cache.rglob("*.npz"))) == 160
