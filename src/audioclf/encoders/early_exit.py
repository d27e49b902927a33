"""Running a transformers encoder only as deep as a saved probe reads.

A probe that chose layer k needs hidden states 0..k, and hidden state i is the input of transformer layer i.
So a forward pre-hook on layers 0..k records those inputs, and the one on layer k stops the forward pass: the
layers from k on are never computed. The loaded model is not changed (the hooks live for one call), and a test
checks for every family that the recorded states equal the whole model's ``hidden_states``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# model types whose recorded layer inputs are tested equal to hidden_states 0..k (tests/test_early_exit.py)
EXACT_TYPES = frozenset(
    {
        "wav2vec2",
        "hubert",
        "wavlm",
        "data2vec-audio",
        "unispeech",
        "unispeech-sat",
        "sew",
        "sew-d",
        "wav2vec2-conformer",
        "wav2vec2-bert",
        "whisper",
        "audio-spectrogram-transformer",
    }
)
SKIP_PARENTS = ("feature_extractor", "pos_conv_embed")  # convolution stacks, not transformer layers


class _Enough(Exception):
    """Raised by the last hook needed: the rest of the forward pass is not wanted."""


def transformer_layers(model: Any) -> Any | None:
    """The ModuleList of ``num_hidden_layers`` transformer layers, if the model has one."""
    import torch

    n = int(getattr(model.config, "num_hidden_layers", 0))
    for name, module in model.named_modules():
        parts = name.split(".")
        if (
            isinstance(module, torch.nn.ModuleList)
            and len(module) == n
            and parts[-1] in ("layers", "layer")
            and not any(p in SKIP_PARENTS for p in parts)
        ):
            return module
    return None


def stoppable_layers(model: Any, layer: int) -> Any | None:
    """The transformer layers, where states 0..``layer`` can be had without the deeper ones (and that saves
    something); None otherwise."""
    n = int(getattr(model.config, "num_hidden_layers", 0))
    if model.config.model_type not in EXACT_TYPES or not 0 <= layer < n:
        return None
    return transformer_layers(model)


def states_up_to(layers: Any, layer: int, forward: Callable[[], Any]) -> list[Any]:
    """Hidden states 0..``layer`` of ``forward()`` (a call of the model that holds ``layers``), which stops at
    layer ``layer``."""
    recorded: list[Any] = []

    def record(module: Any, args: tuple[Any, ...], kwargs: Mapping[str, object]) -> None:
        recorded.append(args[0] if args else kwargs["hidden_states"])
        if len(recorded) > layer:
            raise _Enough

    handles = [layers[i].register_forward_pre_hook(record, with_kwargs=True) for i in range(layer + 1)]
    try:
        forward()
    except _Enough:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return recorded
