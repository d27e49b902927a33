"""Labelling with a built-in-encoder model needs neither torch, scikit-learn, transformers nor matplotlib (they
cost seconds of start-up), and the numpy head it uses gives the torch head's logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclf.fitting.probe import ProbeHead
from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import LAST, MEAN, WEIGHTED, ProbeConfig

HEAVY = ("torch", "sklearn", "transformers", "matplotlib")


@pytest.mark.parametrize(
    "config",
    [ProbeConfig(layer=LAST), ProbeConfig(hidden=16, layer=WEIGHTED), ProbeConfig(layer=MEAN), ProbeConfig(layer="1")],
)
def test_numpy_head_equals_the_torch_head(config: ProbeConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = ProbeHead(3, 8, 4, config)
    x = torch.randn(50, 3, 8) * 3 + 1
    head.set_normalisation(x)
    with torch.no_grad():
        head.layer_logits.copy_(torch.randn(3))
    head.eval()
    with torch.no_grad():
        want = head(x).numpy()
    arrays = HeadArrays.from_head(head)
    arrays.save(tmp_path / "head.safetensors")
    loaded = HeadArrays.load(tmp_path / "head.safetensors", 3, 8, 4, config)
    np.testing.assert_allclose(loaded.logits(x.numpy()), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.pool(x.numpy()), head.pool_layers(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_mismatched_weights_are_one_model_error(tmp_path: Path) -> None:
    from audioclf.errors import ModelError

    HeadArrays.from_head(ProbeHead(3, 8, 4, ProbeConfig())).save(tmp_path / "head.safetensors")
    with pytest.raises(ModelError, match="do not match the model config"):
        HeadArrays.load(tmp_path / "head.safetensors", 3, 8, 5, ProbeConfig())
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="missing or damaged weights"):
        HeadArrays.load(tmp_path / "bad.safetensors", 3, 8, 4, ProbeConfig())


def test_labelling_with_a_builtin_model_imports_no_heavy_library(
    tone_model: tuple[Path, Path], tone_dataset: Path
) -> None:
    model, cache = tone_model
    clip = sorted(tone_dataset.parent.glob("*.wav"))[0]
    script = (
        "import sys, json\n"
        "from audioclf.cli.main import main\n"
        f"code = main(['predict', '--model', {str(model)!r}, {str(clip)!r}, '--cache-dir', {str(cache)!r},"
        " '--json', '--quiet'])\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    code, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert '"label"' in out.stdout and code == 0, out.stdout + out.stderr
    assert loaded == [], f"labelling imported {loaded}"
