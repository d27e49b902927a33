"""Model folders written by earlier versions (tests/fixtures/models/<version>) still load and predict the same.

Regenerate a version's folders with tests/fixtures/make_model_fixtures.py; never edit them by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_clips

import audioclf

FIXTURES = Path(__file__).parent / "fixtures" / "models"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())
KINDS = ("probe", "multilabel", "fused", "finetuned")
# the fine-tuned model runs in bf16 where the CPU has it, and bf16 arithmetic differs between CPUs
TOLERANCE = {"finetuned": 0.02}


@pytest.fixture(scope="module", params=VERSIONS)
def version(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of one version's folders in a new place (their encoder paths are relative to it)."""
    copy = tmp_path_factory.mktemp("fixtures") / request.param
    shutil.copytree(FIXTURES / request.param, copy)
    return copy


@pytest.mark.parametrize("kind", KINDS)
def test_an_old_model_folder_predicts_as_it_did(
    version: Path, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(version)
    expected = json.loads((version / "expected.json").read_text())[kind]
    model = audioclf.load(kind, cache_dir=tmp_path / "cache")
    got = model.predict([str(c) for c in fixture_clips(tmp_path / "clips")], top_k=3)
    assert [p.label for p in got] == [e["label"] for e in expected]
    for p, e in zip(got, expected, strict=True):
        assert [label for label, _ in p.top] == [label for label, _ in e["top"]] or kind in TOLERANCE
        np.testing.assert_allclose(
            sorted(q for _, q in p.top), sorted(q for _, q in e["top"]), atol=TOLERANCE.get(kind, 1e-6)
        )
