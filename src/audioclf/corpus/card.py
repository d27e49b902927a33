"""``index.json``: what an index was built with. Written once by the first build; every later build and every
search checks against it, so vectors of two encoders (or two window settings) never meet in one index."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from audioclf.corpus.similarity import Similarity
from audioclf.errors import AudioclfError
from audioclf.fileio import JSONObject, write_json_atomic
from audioclf.io.audio import WindowOptions
from audioclf.version import __version__

INDEX_FORMAT = 1
CARD_NAME = "index.json"


class CorpusError(AudioclfError):
    """An index that cannot be used as asked: missing, corrupt, or built with something else than the query."""


@dataclass(frozen=True)
class TextSide:
    """Transcripts of every window and their sentence embeddings (``--transcripts``)."""

    transcriber: str  # spec, e.g. whisper:base or hf:…
    transcriber_identity: str
    text_encoder: str
    text_encoder_identity: str
    dim: int

    def to_dict(self) -> JSONObject:
        return dict(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextSide:
        text = {f.name: str(data[f.name]) for f in fields(cls) if f.name != "dim"}
        return cls(**text, dim=int(data["dim"]))


@dataclass(frozen=True)
class IndexCard:
    encoder: str  # the spec as given, e.g. builtin or hf:/models/whisper-base
    encoder_identity: str  # content hash of weights and settings: a query must be embedded by the same
    layer: int  # which of the encoder's layers the vectors are
    n_layers: int
    dim: int
    windows: WindowOptions
    similarity: Similarity
    text: TextSide | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # labels made on this index name it
    format: int = INDEX_FORMAT
    version: str = __version__

    def to_dict(self) -> JSONObject:
        return {
            "format": self.format,
            "version": self.version,
            "id": self.id,
            "encoder": self.encoder,
            "encoder_identity": self.encoder_identity,
            "layer": self.layer,
            "n_layers": self.n_layers,
            "dim": self.dim,
            "windows": {"window_s": self.windows.window_s, "hop_s": self.windows.hop_s},
            "max_duration_s": self.windows.max_duration_s,
            "similarity": str(self.similarity),
            "text": None if self.text is None else self.text.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexCard:
        if int(data["format"]) > INDEX_FORMAT:
            raise ValueError(f"index format {data['format']} is newer than this audioclf reads ({INDEX_FORMAT})")
        w = data["windows"]
        text = data.get("text")
        return cls(
            encoder=str(data["encoder"]),
            encoder_identity=str(data["encoder_identity"]),
            layer=int(data["layer"]),
            n_layers=int(data["n_layers"]),
            dim=int(data["dim"]),
            windows=WindowOptions(float(w["window_s"]), float(w["hop_s"]), data.get("max_duration_s")),
            similarity=Similarity(data["similarity"]),
            text=None if text is None else TextSide.from_dict(text),
            id=str(data.get("id") or ""),
            format=int(data["format"]),
            version=str(data.get("version", "")),
        )

    def same_build(self, other: IndexCard) -> str | None:
        """Why ``other`` (a new build's settings) cannot add to this index, or None when it can."""
        if other.encoder_identity != self.encoder_identity:
            return f"it was built with {self.encoder}, not {other.encoder}"
        if other.windows.window_s != self.windows.window_s or other.windows.hop_s != self.windows.hop_s:
            return f"it was built with windows of {self.windows.window_s:g} s every {self.windows.hop_s:g} s"
        if other.layer != self.layer:
            return f"it holds layer {self.layer} of {self.encoder}"
        if (other.text is None) != (self.text is None) or (
            other.text and self.text and other.text.text_encoder_identity != self.text.text_encoder_identity
        ):
            return "it was built " + ("without transcripts" if self.text is None else "with other transcripts")
        return None


def write_card(folder: Path, card: IndexCard) -> None:
    write_json_atomic(folder / CARD_NAME, card.to_dict())
