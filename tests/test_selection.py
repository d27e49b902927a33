"""Cross-validated probe selection: grouped folds, the logistic-regression head, the choice, refit, fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from audioclf.errors import TrainingError
from audioclf.fitting.data import Dataset, cv_folds
from audioclf.fitting.fusion import calibrate
from audioclf.fitting.logreg import logreg_path
from audioclf.fitting.probe import FitOptions, ProbeHead, predict_logits
from audioclf.fitting.selection import SelectOptions, candidate_grid, refit, select
from audioclf.io.manifest import Item
from audioclf.model.probe_config import LBFGS, ProbeConfig

FAST = FitOptions(max_epochs=60, patience=10)


def make_items(labels: np.ndarray, groups: list[str], split: str | None = None) -> list[Item]:
    return [
        Item(f"/r{i}.wav", str(lab), split, g, f"m.csv:{i + 2}")
        for i, (lab, g) in enumerate(zip(labels, groups, strict=True))
    ]


def dataset(x: np.ndarray, y: np.ndarray, groups: list[str]) -> Dataset:
    """One window per recording."""
    x3 = torch.from_numpy(x.astype(np.float32)[:, None, :])
    return Dataset(x3, y, np.arange(len(y)), make_items(y, groups))


def linear_blobs(n: int = 120, dim: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.standard_normal((n, dim))
    x[:, :3] += 1.5 * np.eye(3)[y]
    return x, y, [f"g{i // 4}" for i in range(n)]


def test_cv_folds_hold_each_group_out_once_and_never_split_it() -> None:
    y = np.array([i % 3 for i in range(90)])
    groups = [f"speaker{i % 9}" for i in range(90)]
    folds = cv_folds(make_items(y, groups), 5, seed=0)
    assert len(folds) == 5
    held_all = np.concatenate([held for _, held in folds])
    assert sorted(held_all) == list(range(90))  # every recording held out exactly once
    for keep, held in folds:
        assert not {groups[i] for i in keep} & {groups[i] for i in held}
        assert len(keep) + len(held) == 90


def test_cv_folds_fewer_groups_than_folds_and_split_val() -> None:
    y = np.array([0, 1] * 6)
    assert len(cv_folds(make_items(y, [f"g{i % 3}" for i in range(12)]), 5, 0)) == 3
    items = make_items(y, [f"g{i}" for i in range(12)])
    marked = [Item(i.source, i.label, "val" if n < 4 else None, i.group, i.where) for n, i in enumerate(items)]
    ((keep, held),) = cv_folds(marked, 5, 0)  # split=val rows: the one validation fold
    assert list(held) == [0, 1, 2, 3] and list(keep) == list(range(4, 12))
    with pytest.raises(TrainingError, match="at least 2"):
        cv_folds(make_items(y, ["one"] * 12), 5, 0)
    few = cv_folds(make_items(np.array([0, 1, 0, 1]), ["a", "b", "c", "d"]), 5, 0)  # 2 per label < 4 folds
    assert len(few) == 4 and sorted(np.concatenate([held for _, held in few])) == [0, 1, 2, 3]


def test_logreg_head_is_the_scikit_learn_model() -> None:
    x, y, _ = linear_blobs()
    config = ProbeConfig(fitter=LBFGS)
    (head,) = logreg_path(torch.from_numpy(x.astype(np.float32)[:, None]), y, 3, config, [0.1], balanced=False)
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=0.1, max_iter=1000, tol=1e-8).fit(scaler.transform(x), y)
    x_new = np.random.default_rng(9).standard_normal((30, 20))
    ours = torch.softmax(torch.from_numpy(predict_logits(head, x_new.astype(np.float32)[:, None])), 1).numpy()
    # The head z-scores with the unbiased std (scikit-learn: biased), so the fits differ by a hair.
    np.testing.assert_allclose(ours, reference.predict_proba(scaler.transform(x_new)), atol=0.02)
    assert head.config.describe() == "logreg C=0.1 layer=last"


def test_binary_logreg_head() -> None:
    x, y, _ = linear_blobs()
    y = (y == 0).astype(np.int64)
    (head,) = logreg_path(torch.from_numpy(x.astype(np.float32)[:, None]), y, 2, ProbeConfig(), [1.0], balanced=False)
    ours = torch.softmax(torch.from_numpy(predict_logits(head, x.astype(np.float32)[:, None])), 1).numpy()
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(scaler.transform(x), y)
    np.testing.assert_allclose(ours, reference.predict_proba(scaler.transform(x)), atol=0.02)


def test_selection_is_deterministic_and_recorded() -> None:
    data = dataset(*linear_blobs())
    options = SelectOptions(folds=4, fit=FAST, progress=False)
    first, second = select(data, 3, options), select(data, 3, options)
    assert first.chosen.config == second.chosen.config and first.n_folds == 4
    assert [c.as_dict() for c in first.candidates] == [c.as_dict() for c in second.candidates]
    kinds = {c.config.describe().split()[0] for c in first.candidates}
    assert {"logreg", "linear", "mlp512"} <= kinds
    head_a, _ = refit(data, 3, first.chosen, FAST)
    head_b, _ = refit(data, 3, second.chosen, FAST)
    for (name, a), b in zip(head_a.state_dict().items(), head_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_linear_data_keeps_logreg_but_xor_needs_the_mlp() -> None:
    linear = select(dataset(*linear_blobs()), 3, SelectOptions(folds=4, fit=FAST, progress=False))
    assert linear.chosen.config.fitter == LBFGS
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (240, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)  # no linear model beats chance
    x = np.hstack([x, 0.1 * rng.standard_normal((240, 4))])
    xor = select(dataset(x, y, [f"g{i // 4}" for i in range(240)]), 2, SelectOptions(folds=4, fit=FAST, progress=False))
    assert xor.chosen.config.hidden == 512, [c.as_dict() for c in xor.candidates]
    best_logreg = max(c.f1.mean() for c in xor.candidates if c.config.fitter == LBFGS)
    assert xor.chosen.f1.mean() > best_logreg + 0.2


def test_refit_uses_every_recording_for_the_chosen_epochs() -> None:
    data = dataset(*linear_blobs())
    chosen = select(data, 3, SelectOptions(folds=4, hidden=512, fit=FAST, progress=False)).chosen
    assert chosen.epochs >= 1 and np.isfinite(chosen.oof).all()  # every recording was held out once
    seen = []
    head, fit = refit(data, 3, chosen, FAST, on_epoch=seen.append)
    assert len(seen) == chosen.epochs == fit.best_epoch
    assert seen[-1].val_f1 == pytest.approx(chosen.curve[chosen.epochs - 1][2])  # the CV curve, shown per epoch
    fitted = (predict_logits(head, data.x.numpy()).argmax(1) == data.y).mean()
    assert fitted >= chosen.accuracy.mean() > 0.6  # the refit learns at least what the folds did


def test_fusion_falls_back_to_the_informative_view() -> None:
    x, y, groups = linear_blobs(n=120)
    noise = np.random.default_rng(1).standard_normal((120, 20))
    options = SelectOptions(folds=4, fit=FAST, progress=False)
    text, acoustic = dataset(x, y, groups), dataset(noise, y, groups)
    text_sel, acoustic_sel = select(text, 3, options), select(acoustic, 3, options)
    text_head, _ = refit(text, 3, text_sel.chosen, FAST)
    fusion, note = calibrate(acoustic_sel.chosen.oof, text_sel.chosen.oof, acoustic, text_head)
    assert fusion.weight == 0.0, note  # the noise view gets no say
    assert "acoustic weight 0.0" in note
    views = fusion.views(
        predict_logits(text_head, noise.astype(np.float32)[:, None]), np.arange(120), x.astype(np.float32)[:, None]
    )
    np.testing.assert_allclose(views["fused"], views["transcript"], atol=1e-5)


def test_large_sets_search_a_smaller_grid() -> None:
    def grid(n: int, dim: int) -> tuple[int, int, int]:
        y = np.arange(n) % 2
        data = Dataset(torch.zeros(n, 1, dim), y, np.arange(n), make_items(y, [f"g{i}" for i in range(n)]))
        torch_configs, logreg, c_grid = candidate_grid(data, SelectOptions())
        return len(torch_configs), len(logreg), len(c_grid)

    small, large = grid(200, 64), grid(1_100, 1_024)
    assert small == (4, 1, 8)  # linear and MLP at two learning rates; one layer; eight C values
    assert large[0] < small[0] and large[2] < small[2]


def test_a_feature_constant_in_training_keeps_its_scale() -> None:
    """Dividing by a clamped ~0 std made z-scores of 60,000 on another speaker; StandardScaler keeps scale 1."""
    x = torch.zeros(12, 1, 3)
    x[:, 0, 0] = torch.linspace(-1, 1, 12)
    x[:, 0, 1] = 5.0  # constant in training
    head = ProbeHead(1, 3, 2, ProbeConfig())
    head.set_normalisation(x)
    assert head.std[0, 1] == 1.0 and head.std[0, 0] < 1.0
    shifted = torch.tensor([[[0.0, 5.3, 0.0]]])
    assert torch.allclose(head.pool_layers(shifted), torch.tensor([[0.0, 0.3, 0.0]]), atol=1e-5)
