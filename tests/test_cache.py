from __future__ import annotations

from pathlib import Path

import numpy as np

from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache, file_digest


def entry(n: int = 2) -> Embedded:
    rng = np.random.default_rng(0)
    return Embedded(rng.standard_normal((n, 3, 4)).astype(np.float32), np.arange(n) * 10.0, np.full(n, 10.0))


def test_roundtrip_and_keys(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "enc-a", WindowOptions())
    assert cache.get("d1") is None
    cache.put("d1", entry())
    got = cache.get("d1")
    assert got is not None
    np.testing.assert_array_equal(got.embeddings, entry().embeddings)
    assert EmbeddingCache(tmp_path, "enc-b", WindowOptions()).get("d1") is None  # other encoder
    assert EmbeddingCache(tmp_path, "enc-a", WindowOptions(window_s=5.0)).get("d1") is None  # other windows
    assert not list(tmp_path.rglob("*.tmp"))


def test_torn_entry_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "enc", WindowOptions())
    cache.put("d", entry())
    path = cache.path_for("d")
    path.write_bytes(path.read_bytes()[:50])
    assert cache.get("d") is None


def test_digest_follows_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"same")
    (tmp_path / "b.wav").write_bytes(b"same")
    (tmp_path / "c.wav").write_bytes(b"other")
    assert file_digest(tmp_path / "a.wav") == file_digest(tmp_path / "b.wav") != file_digest(tmp_path / "c.wav")


def test_a_file_is_hashed_once_per_run_but_again_when_it_changes(tmp_path: Path) -> None:
    import os

    from audioclf.io.cache import _file_digest

    path = tmp_path / "a.wav"
    path.write_bytes(b"first")
    first = file_digest(path)
    misses = _file_digest.cache_info().misses
    assert file_digest(path) == first and _file_digest.cache_info().misses == misses  # remembered, not re-read
    st = os.stat(path)
    path.write_bytes(b"other")  # same size, and the modification time put back: the change time still moves
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(path) != first


def test_non_finite_embeddings_are_never_cached_and_a_poisoned_entry_is_a_miss(tmp_path: Path) -> None:
    import pytest

    cache = EmbeddingCache(tmp_path, "enc", WindowOptions())
    bad = entry()
    bad.embeddings[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cache.put("d", bad)
    assert not cache.path_for("d").exists()
    cache.put("d", entry())
    with open(cache.path_for("d"), "wb") as fh:  # an entry written by a version that cached NaN
        np.savez(fh, embeddings=bad.embeddings, starts_s=bad.starts_s, durations_s=bad.durations_s)
    assert cache.get("d") is None
