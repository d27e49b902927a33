"""What a probe reads, as saved in a model card: the sound, what is said, or both (light: no model imports)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from audioclf.encoders.spec import ModelSpec
from audioclf.fileio import JSONObject


class FeatureMode(enum.StrEnum):
    """What a probe reads: the sound, what is said, or both (each with its own probe, mixed)."""

    ACOUSTIC = "acoustic"
    TRANSCRIPT = "transcript"
    FUSED = "fused"


FEATURES = tuple(mode.value for mode in FeatureMode)


def feature_mode(text: str) -> FeatureMode:
    """The one parser of a feature mode (command line, Python API, model card)."""
    try:
        return FeatureMode(text)
    except ValueError:
        raise ValueError(f"features mode {text!r}; use one of {', '.join(FEATURES)}") from None


@dataclass(frozen=True)
class Features:
    """The feature mode and, for transcript features, the transcriber and sentence encoder with their weights'
    identities at training (a model refuses to run when they have changed)."""

    mode: FeatureMode = FeatureMode.ACOUSTIC
    transcriber: ModelSpec | None = None
    transcriber_identity: str | None = None
    text_encoder: ModelSpec | None = None
    text_identity: str | None = None

    def to_dict(self) -> JSONObject:
        if self.mode is FeatureMode.ACOUSTIC:
            return {"mode": FeatureMode.ACOUSTIC.value}
        return {
            k: str(v) if isinstance(v, ModelSpec | FeatureMode) else v
            for k, v in self.__dict__.items()
            if v is not None
        }
