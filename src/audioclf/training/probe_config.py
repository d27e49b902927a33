"""What a probe is (its layer choice, classifier and fitter), without torch: saved models are read and applied
through this and ``head_arrays``, so labelling with a built-in encoder never imports torch."""

from __future__ import annotations

from dataclasses import dataclass

LAST = "last"
WEIGHTED = "weighted"
MEAN = "mean"  # the plain average of the z-scored layers
ADAMW = "adamw"  # a torch head trained by AdamW for a number of epochs
CONSTANT_STD = 1e-5  # a training std below this: the feature is constant and is not rescaled
LBFGS = "lbfgs"  # a standardised L2 logistic regression (scikit-learn, LBFGS) held as a linear head


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
        if self.fitter == LBFGS:
            return f"logreg C={self.c:g} layer={self.layer}"
        kind = "linear" if self.hidden == 0 else f"mlp{self.hidden}"
        return f"{kind} lr={self.lr:g} wd={self.weight_decay:g} layer={self.layer}"
