"""Atomic writes keep the mode the umask gives (a model made on the host is readable by a server's user)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audioclf.fileio import current_umask, temp_dir_beside, write_json_atomic
from audioclf.fitting.probe import ProbeHead
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache
from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import ProbeConfig


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_and_folders_follow_the_umask(umask: int, tmp_path: Path) -> None:
    assert current_umask() == umask
    write_json_atomic(tmp_path / "audioclf.json", {"a": 1})
    assert _mode(tmp_path / "audioclf.json") == 0o666 & ~umask
    cache = EmbeddingCache(tmp_path / "cache", "enc", WindowOptions())
    cache.put("d", Embedded(np.zeros((1, 1, 2), np.float32), np.zeros(1), np.ones(1)))
    assert _mode(cache.path_for("d")) == 0o666 & ~umask
    head = HeadArrays.from_head(ProbeHead(2, 3, 2, ProbeConfig()))
    head.save(tmp_path / "head.safetensors")  # safetensors writes a file of its own, 0600
    assert _mode(tmp_path / "head.safetensors") == 0o666 & ~umask
    assert _mode(temp_dir_beside(tmp_path / "checkpoint")) == 0o777 & ~umask
