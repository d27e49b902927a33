from __future__ import annotations

from pathlib import Path

import numpy as np

from audioclf.audio import WindowOptions
from audioclf.cache import Embedded, EmbeddingCache, file_digest


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
