"""The CPU kernels (blocked attention, channels-last and framed convolutions) leave every family's hidden states
as the stock transformers model computes them, masks and all."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone
from tiny_models import FAMILIES, save_tiny

from audioclf.encoders import cpu_kernels
from audioclf.encoders.hf_encoder import HFEncoder
from audioclf.encoders.loader import load_encoder


def _states(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return list(model(**inputs, output_hidden_states=True).hidden_states)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_computes_the_same_states_with_the_kernels(family: str, tmp_path: Path) -> None:
    encoder = load_encoder(f"hf:{save_tiny(family, tmp_path / family)}", precision="fp32").encoder
    assert isinstance(encoder, HFEncoder)
    stock = encoder._model
    fast = copy.deepcopy(stock)
    attention, convs = cpu_kernels.install(fast)
    waves = [tone(300, 2.0), tone(700, 1.3)]
    inputs = encoder.family.inputs(waves, mask=True)
    if "attention_mask" in inputs and not encoder._masks:
        inputs.pop("attention_mask")
    for a, b in zip(_states(stock, inputs), _states(fast, inputs), strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)
    if family in ("hubert", "data2vec-audio", "unispeech", "whisper"):  # attention through AttentionInterface
        assert attention
    if family in ("hubert", "wavlm", "sew", "whisper"):  # convolution front ends
        assert convs >= 2


def test_blocked_attention_matches_sdpa_with_masks_and_long_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 37, 16) for _ in range(3))
    mask = torch.ones(3, 1, 37, 37, dtype=torch.bool)
    mask[1, ..., 20:] = False  # the second clip's last 17 frames are padding
    module = torch.nn.Module().eval()
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    for block in (1 << 22, 100):  # whole heads per block, and a few rows of one head at a time
        monkeypatch.setattr(cpu_kernels, "SCORE_BLOCK", block)
        out, _ = cpu_kernels.blocked_attention(module, q, k, v, mask)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    additive = torch.zeros(3, 1, 37, 37).masked_fill(~mask, float("-inf"))
    out, _ = cpu_kernels.blocked_attention(module, q, k, v, additive)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out, _ = cpu_kernels.blocked_attention(module, q, k, v, torch.zeros_like(mask))  # no key at all: no NaN
    assert torch.isfinite(out).all()


def test_bf16_encoders_use_the_kernels_and_stay_close_to_fp32(tmp_path: Path) -> None:
    folder = save_tiny("hubert", tmp_path / "hubert")
    fp32 = load_encoder(f"hf:{folder}", precision="fp32").encoder
    bf16 = load_encoder(f"hf:{folder}", precision="bf16").encoder
    assert isinstance(bf16, HFEncoder) and bf16._model.config._attn_implementation == cpu_kernels.ATTENTION
    assert isinstance(fp32, HFEncoder) and fp32._model.config._attn_implementation != cpu_kernels.ATTENTION
    waves = [tone(300, 2.0), tone(700, 1.3), tone(500, 0.7)]  # a padded batch: masks through the kernel
    a, b = fp32.embed(waves)[:, -1], bf16.embed(waves)[:, -1]
    cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99
