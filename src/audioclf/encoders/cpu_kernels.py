"""Faster CPU kernels for the two places where torch's defaults leave a transformers audio encoder far below
the matmul peak, installed into a loaded model without changing its weights, names or outputs.

- **Attention.** torch's CPU flash-attention kernel runs bf16 at 110–150 GFLOP/s here (AVX-512 BF16, no AMX)
  while a bf16 matmul runs at 700. ``blocked_attention`` computes the same softmax(QKᵀ)V with plain matmuls on
  bounded blocks (scores for at most ``SCORE_BLOCK`` pairs at a time, so they stay in cache): 2× the flash
  kernel. It is registered with transformers' ``AttentionInterface`` and chosen through the model's own
  ``set_attn_implementation``, so only families whose attention goes through that interface use it.
- **Convolutions.** A ``Conv1d`` on a ``[batch, channels, time]`` tensor runs through oneDNN in the
  channels-first layout, at half the speed of the same convolution as a 2-D one in channels-last layout
  (wav2vec2's 512→512 feature convolutions: 314 → 678 GFLOP/s). ``channels_last_conv`` gives each such module a
  forward that does that; its output is the same tensor, laid out time-major, which the next convolution takes
  without a copy.

tests/test_cpu_kernels.py checks every family's outputs against the stock model's.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION = "audioclf_blocked"
SCORE_BLOCK = 1 << 22  # query-key pairs per block of scores: 8 MB of bf16
MIN_GROUP_CHANNELS = 16  # input channels per group for the channels-last form (wav2vec2's positional conv: 48)


def blocked_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """softmax(QKᵀ·scale + mask)V for ``[batch, heads, time, dim]`` inputs, as transformers' attention
    functions return it (``[batch, time, heads, dim]``). Anything it does not handle goes to SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unusual = kwargs.get("position_bias") is not None or kwargs.get("is_causal") or kwargs.get("softcap")
    if unusual or module.training or query.shape[1] != key.shape[1] or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    batch, heads, steps, dim = query.shape
    keys = key.shape[2]
    q = query * (dim**-0.5 if scaling is None else scaling)
    k = key.transpose(2, 3)
    out = torch.empty_like(query)
    group = min(heads, max(1, SCORE_BLOCK // (steps * keys)))  # heads per block, or rows of one head
    rows = steps if group > 1 else max(1, SCORE_BLOCK // keys)
    for b in range(batch):
        for h in range(0, heads, group):
            for r in range(0, steps, rows):
                scores = torch.matmul(q[b, h : h + group, r : r + rows], k[b, h : h + group])
                if attention_mask is not None:
                    scores = _masked(scores, attention_mask[b, :, r : r + rows])
                torch.matmul(
                    torch.softmax(scores, -1), value[b, h : h + group], out=out[b, h : h + group, r : r + rows]
                )
    return out.transpose(1, 2), None


def _masked(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores with a boolean (True: attend) or additive mask applied; the mask broadcasts over heads."""
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # a row with no key: uniform, not NaN
    return scores + mask


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION, blocked_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # boolean masks, True where a key is attended


def install(model: Any) -> tuple[bool, int]:
    """Both kernels into a model that runs on the CPU: (blocked attention in use, convolutions changed)."""
    return use_blocked_attention(model), channels_last_conv(model)


def install_where_faster(model: Any, bf16: bool) -> tuple[bool, int]:
    """``install`` where it was measured faster: bf16 weights on the CPU (in fp32 it gained nothing here,
    0.93–1.0×, bench/embed_speed.py); elsewhere the model is left as it is."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    return install(model) if bf16 and on_cpu else (False, 0)


def use_blocked_attention(model: Any) -> bool:
    """Route ``model``'s attention through ``blocked_attention`` where the family allows it."""
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", "eager", ATTENTION):
        return False  # flash / flex kernels the user chose stay
    _register()
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, KeyError, AttributeError, NotImplementedError):
        return False  # a family with its own attention module (WavLM, conformers)
    return True


def _channels_last_forward(self: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    weight = self.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    padding = (0, int(self.padding[0]))
    stride, dilation = (1, int(self.stride[0])), (1, int(self.dilation[0]))
    return F.conv2d(x, weight, self.bias, stride, padding, dilation, self.groups).squeeze(2)


def _framed_forward(self: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """One input channel: the convolution is a matmul of the weights with the framed signal."""
    frames = x[:, 0].unfold(-1, int(self.kernel_size[0]), int(self.stride[0]))  # [batch, steps, kernel]
    frames = frames.transpose(1, 2).contiguous().float()  # [batch, kernel, steps]: a small copy
    # bmm, not matmul: matmul would compute frames @ weightᵀ, a time-major result on which GroupNorm is 5x slower.
    # In fp32 whatever the model's precision: with K = 10 the bf16 path gains nothing, and a bf16 matmul with K
    # not a multiple of 32 is the one oneDNN has computed wrongly on AMX (oneDNN issue 5717).
    with torch.autocast(x.device.type, enabled=False):
        y = torch.bmm(self.weight[:, 0].float().expand(x.shape[0], -1, -1), frames)  # [batch, channels, steps]
    y = y.to(x.dtype)
    return y if self.bias is None else y + self.bias[:, None]


def _conv_forward(module: torch.nn.Module) -> Any:
    """The faster forward for a ``Conv1d`` on the CPU, or None."""
    if not isinstance(module, torch.nn.Conv1d) or module.weight.device.type != "cpu":
        return None
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    if module.in_channels == 1 and module.groups == 1 and module.padding[0] == 0 and module.dilation[0] == 1:
        return _framed_forward
    # depthwise and thin grouped convolutions (conformers) are much slower channels-last: they stay
    return _channels_last_forward if module.in_channels // module.groups >= MIN_GROUP_CHANNELS else None


def channels_last_conv(model: torch.nn.Module) -> int:
    """Give every ``Conv1d`` of ``model`` the faster forward: channels-last, or, for one input channel
    (wav2vec2's first convolution, 1.3 GFLOP per 40 s at 7 GFLOP/s through oneDNN), a matmul on frames whose
    channels-first output suits the GroupNorm after it. The number changed."""
    changed = 0
    for module in model.modules():
        forward = _conv_forward(module)
        if forward is not None:
            module.forward = types.MethodType(forward, module)
            changed += 1
    return changed
