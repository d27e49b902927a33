"""What a probe reads, as saved in a model card: the sound, what is said, or both (light: no model imports)."""

from __future__ import annotations

from dataclasses import dataclass

from audioclf.encoders.spec import ModelSpec
from audioclf.fileio import JSONObject

FEATURES = ("acoustic", "transcript", "fused")


@dataclass(frozen=True)
class Features:
    """The feature mode and, for transcript features, the transcriber and sentence encoder with their weights'
    identities at training (a model refuses to run when they have changed)."""

    mode: str = "acoustic"
    transcriber: ModelSpec | None = None
    transcriber_identity: str | None = None
    text_encoder: ModelSpec | None = None
    text_identity: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in FEATURES:
            raise ValueError(f"features mode {self.mode!r}; use one of {', '.join(FEATURES)}")

    def to_dict(self) -> JSONObject:
        if self.mode == "acoustic":
            return {"mode": "acoustic"}
        return {k: str(v) if isinstance(v, ModelSpec) else v for k, v in self.__dict__.items() if v is not None}
