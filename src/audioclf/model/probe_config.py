"""What a probe is (its layer choice, classifier and fitter), without torch: saved models are read and applied
through this and ``head_arrays``, so labelling with a built-in encoder never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audioclf.encoders.spec import ModelSpec

LAST = "last"
WEIGHTED = "weighted"
MEAN = "mean"  # the plain average of the z-scored layers
ADAMW = "adamw"  # a torch head trained by AdamW for a number of epochs
CONSTANT_STD = 1e-5  # a training std below this: the feature is constant and is not rescaled
LBFGS = "lbfgs"  # a standardised L2 logistic regression (scikit-learn, LBFGS) held as a linear head
PROMPTS = "prompts"  # no fitting: a zero-shot head, its classes' descriptions in words (fitting.zero_shot)


@dataclass(frozen=True)
class ProbeConfig:
    """One point of the hyper-parameter search."""

    hidden: int = 0  # 0: logistic regression; otherwise one hidden layer of this width
    lr: float = 1e-3
    weight_decay: float = 0.1  # decoupled (AdamW)
    layer: str = LAST  # "last", "weighted", "mean" or a layer index as a string ("0" = the CNN/input features)
    dropout: float = 0.2
    fitter: str = ADAMW  # ADAMW, or LBFGS: logistic regression with inverse L2 strength ``c`` (hidden = 0)
    c: float = 0.0

    def describe(self) -> str:
        if self.fitter == PROMPTS:
            return "zero-shot: nearest label description"
        if self.fitter == LBFGS:
            return f"logreg C={self.c:g} layer={self.layer}"
        kind = "linear" if self.hidden == 0 else f"mlp{self.hidden}"
        return f"{kind} lr={self.lr:g} wd={self.weight_decay:g} layer={self.layer}"


def check_layer(layer: str, n_layers: int, encoder: ModelSpec) -> None:
    """Refuse a layer choice the encoder cannot give, before anything is embedded: ``auto``, ``last``,
    ``weighted``, ``mean`` or an index from 0 (the input features) to ``n_layers - 1``."""
    from audioclf.errors import TrainingError  # this module stays import-light

    if layer in ("auto", LAST, WEIGHTED, MEAN):
        if n_layers == 1 and layer in (WEIGHTED, MEAN):
            raise TrainingError(f"layer {layer}: {encoder} gives one layer; use auto or last", option="layer")
        return
    if not (layer.isascii() and layer.isdigit()):
        raise TrainingError(
            f"layer {layer}: use auto, last, weighted, mean or a layer index from 0 to {n_layers - 1}", option="layer"
        )
    if int(layer) >= n_layers or n_layers == 1:
        which = "only one layer: use auto or last" if n_layers == 1 else f"layers 0 to {n_layers - 1}"
        raise TrainingError(f"layer {layer}: {encoder} has {which}", option="layer")
