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


def test_bf16_kernels_agree_with_the_stock_bf16_model(tmp_path: Path) -> None:
    """Which side a bf16 disagreement is on: the stock model in bf16 against fp32 (the CPU's bf16), and the
    kernels against the stock model, both in bf16 (these kernels). Frame by frame, on equal-length clips."""
    encoder = load_encoder(f"hf:{save_tiny('hubert', tmp_path / 'hubert')}", precision="fp32").encoder
    assert isinstance(encoder, HFEncoder)
    stock = copy.deepcopy(encoder._model).to(torch.bfloat16)
    fast = copy.deepcopy(stock)
    assert cpu_kernels.install(fast) == (True, 3)
    inputs = encoder.family.inputs([tone(f, 1.3, noise=0.1, seed=i) for i, f in enumerate((300, 700, 1500))])
    half = {k: v.bfloat16() if v.is_floating_point() else v for k, v in inputs.items()}
    exact, rounded, kernels = (_states(m, i)[-1] for m, i in ((encoder._model, inputs), (stock, half), (fast, half)))

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).min())

    assert cosine(rounded, exact) > 0.99, "this CPU's bf16 arithmetic is far from fp32 on the stock model"
    assert cosine(kernels, rounded) > 0.99, "the CPU kernels change the bf16 model's states"


# bf16 arithmetic, bounded: a product of two bf16 numbers is exact in fp32, a K-term fp32 sum of them is off by
# at most (K - 1) * 2^-24 * sum|a*b| in any order, and rounding the result to bf16's 8 significant bits moves it
# by at most 2^-8 of itself to the nearest, 2^-7 in any rounding mode (truncation too): any correct bf16 kernel,
# on any CPU, stays inside (rounded to nearest: at half the bound here), and a result truncated to 7 significant
# bits does not (1.5x the bound).
BF16_STEP = 2.0**-7


def _bf16_bound(reference: torch.Tensor, magnitude: torch.Tensor, terms: int) -> torch.Tensor:
    """The largest error a correctly computed bf16 result may have: ``magnitude`` is sum|a*b| per output."""
    return BF16_STEP * reference.abs() + terms * 2.0**-23 * magnitude + 1e-30


def _assert_within_bf16(got: torch.Tensor, reference: torch.Tensor, bound: torch.Tensor, what: str) -> None:
    excess = ((got.double() - reference).abs() / bound).max().item()
    assert excess <= 1.0, f"{what}: off by {excess:.1f}x the most bf16 rounding allows"


# (batch, M, K, N) of the bf16 matmuls the tiny and the real encoders run: a feature projection (K = 16),
# attention scores (K = head size) and attention-weighted values (K = frames). The framed first convolution
# (K = 10) computes in fp32 (cpu_kernels._framed_forward), so a CPU whose bf16 matmul is wrong for such a K does
# not touch it; test_bf16_convolution_kernels_are_exact_up_to_rounding checks that kernel as it runs.
MATMULS = [(1, 1194, 16, 32), (2, 398, 16, 398), (2, 398, 398, 16)]


@pytest.mark.parametrize(("batch", "m", "k", "n"), MATMULS)
def test_bf16_matmuls_of_the_encoders_are_exact_up_to_rounding(batch: int, m: int, k: int, n: int) -> None:
    """If this fails on a CPU, its bf16 matmul (oneDNN for these shapes) is wrong there, not merely rounded."""
    torch.manual_seed(0)
    a, b = torch.randn(batch, m, k).bfloat16(), torch.randn(batch, k, n).bfloat16()
    # the second time as the framed convolution passes its weights: one matrix broadcast to every clip
    for what, left in (("bmm", a), ("broadcast bmm", a[:1].expand(batch, -1, -1))):
        reference = torch.bmm(left.double(), b.double())
        bound = _bf16_bound(reference, torch.bmm(left.double().abs(), b.double().abs()), k)
        _assert_within_bf16(torch.bmm(left, b), reference, bound, f"{what} {batch}x{m}x{k} @ {k}x{n}")


@pytest.mark.parametrize(
    ("in_channels", "kernel", "stride", "padding"),
    [(1, 10, 5, 0), (16, 8, 4, 0), (16, 3, 1, 1)],  # framed; channels-last; Whisper-like, padded with a bias
)
def test_bf16_convolution_kernels_are_exact_up_to_rounding(
    in_channels: int, kernel: int, stride: int, padding: int
) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(in_channels, 16, kernel, stride=stride, padding=padding, bias=padding > 0).bfloat16()
    assert cpu_kernels.channels_last_conv(conv) == 1
    x = torch.randn(3, in_channels, 4000).bfloat16()
    weight, bias = conv.weight.double(), None if conv.bias is None else conv.bias.double()
    reference = torch.nn.functional.conv1d(x.double(), weight, bias, stride, padding)
    magnitude = torch.nn.functional.conv1d(x.double().abs(), weight.abs(), None, stride, padding)
    if bias is not None:  # a bias added after rounding: one more bf16 rounding of the sum
        magnitude = magnitude + bias.abs()[:, None]
    bound = _bf16_bound(reference, magnitude, in_channels * kernel) * (2 if bias is not None else 1)
    _assert_within_bf16(conv(x), reference, bound, f"conv {in_channels}->16 kernel {kernel}")


def test_bf16_blocked_attention_is_exact_up_to_rounding() -> None:
    """Scores, softmax and values each rounded to bf16: a score off by e moves each weight by at most
    2e of itself, so the output may move by (2 * max|score| + 1) steps of sum_j p_j |v_j|, plus its own."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 398, 16).bfloat16() for _ in range(3))
    mask = torch.ones(2, 1, 398, 398, dtype=torch.bool)
    mask[1, ..., 300:] = False
    out, _ = cpu_kernels.blocked_attention(torch.nn.Module().eval(), q, k, v, mask)
    scores = q.double() @ k.double().transpose(2, 3) * 16**-0.5
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    reference = (probs @ v.double()).transpose(1, 2)
    spread = (probs @ v.double().abs()).transpose(1, 2)
    score_error = BF16_STEP * (scores.abs().amax() + 1) + 16 * 2.0**-23 * scores.abs().amax()
    bound = _bf16_bound(reference, spread, 398) + (2 * score_error + BF16_STEP) * spread
    _assert_within_bf16(out, reference, bound, "blocked attention")
