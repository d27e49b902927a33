"""The novelty detector's covariance: the Ledoit-Wolf precision scikit-learn computes as a d x d matrix, held in
its low-rank form; saved and read back with the same distances; models saved with the full matrix still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from sklearn.covariance import LedoitWolf

from audioclf.errors import ModelError
from audioclf.fitting.novelty import fit_novelty, shrunk_precision
from audioclf.model.novelty import NOVELTY_NAME, Novelty, Precision


def features(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit rows with a few strong directions and a long tail of weak ones, as probe features have."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) * np.logspace(0, -4, dim)
    x = x @ np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dense(p: Precision) -> np.ndarray:
    """The d x d precision iso I + Cᵀ diag(w) C, which the detector never forms."""
    dim = p.components.shape[1]
    return p.isotropic * np.eye(dim) + (p.components.T * p.weights) @ p.components


@pytest.mark.parametrize(("n", "dim"), [(40, 120), (120, 40), (60, 60)])
def test_the_precision_is_scikit_learns_ledoit_wolf(n: int, dim: int) -> None:
    x = features(n, dim).astype(np.float64)
    expected = LedoitWolf().fit(x).precision_
    p = shrunk_precision(x)
    np.testing.assert_allclose(dense(p), expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(len(p.components)), atol=1e-12)


def fitted(n: int = 90, dim: int = 150) -> tuple[Novelty, np.ndarray]:
    x = features(n, dim)
    y = np.arange(n) % 3
    novelty = fit_novelty(x, y, [f"g{i % 5}" for i in range(n)])
    assert novelty is not None
    return novelty, features(20, dim, seed=1)


def test_saved_and_loaded_the_distances_stay(tmp_path: Path) -> None:
    novelty, probe = fitted()
    novelty.save(tmp_path)
    loaded = Novelty.load(tmp_path, novelty.threshold)
    np.testing.assert_allclose(loaded.distances(probe), novelty.distances(probe), rtol=1e-5)
    assert loaded.threshold == novelty.threshold
    # the same distances as the d x d precision would give: (x - m)ᵀ P (x - m) to the nearest class mean
    full = dense(novelty.precision)
    z = probe[:, None, :].astype(np.float64) - novelty.means[None]
    expected = np.einsum("ncd,de,nce->nc", z, full, z).min(1)
    np.testing.assert_allclose(novelty.distances(probe), expected, rtol=1e-8)


def test_a_model_saved_with_the_full_matrix_still_loads(tmp_path: Path) -> None:
    novelty, probe = fitted()
    full = dense(novelty.precision)
    save_file(
        {"means": novelty.means.astype(np.float32), "precision": full.astype(np.float32)}, str(tmp_path / NOVELTY_NAME)
    )
    old = Novelty.load(tmp_path, novelty.threshold)
    np.testing.assert_allclose(old.distances(probe), novelty.distances(probe), rtol=1e-4)
    assert isinstance(old.precision, Precision) and old.precision.isotropic == 0.0


def test_an_unreadable_detector_is_one_model_error(tmp_path: Path) -> None:
    save_file({"means": np.zeros((2, 3), dtype=np.float32)}, str(tmp_path / NOVELTY_NAME))
    with pytest.raises(ModelError, match=r"novelty.safetensors: unreadable .*; retrain the model") as info:
        Novelty.load(tmp_path, 1.0)
    assert "\n" not in str(info.value)
    (tmp_path / NOVELTY_NAME).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="unreadable"):
        Novelty.load(tmp_path, 1.0)
