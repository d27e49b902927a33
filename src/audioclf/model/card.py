"""The model card: everything ``audioclf.json`` holds, as frozen types. One writer (``ModelCard.to_dict``), one
reader (``ModelCard.from_dict``, which reads every form this project has written); nothing else reads the JSON.

The kind of model is decided here, once, at load: ``ModelKind``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audioclf.encoders.spec import ENCODERS, TEXT_ENCODERS, ModelSpec
from audioclf.fileio import JSONObject
from audioclf.io.audio import WindowOptions
from audioclf.model.probe_config import ProbeConfig
from audioclf.model.segmenting import Segmenting
from audioclf.speech.features import FeatureMode, Features, feature_mode
from audioclf.version import __version__

MODEL_FORMAT = 1


class ModelKind(enum.Enum):
    """What the folder holds and so how it is applied (``model.apply``)."""

    PROBE = "probe"  # a probe on the encoder's embeddings, softmax over the labels
    MULTI_LABEL = "multi_label"  # a probe per label, sigmoid, each with its threshold
    TRANSCRIPT = "transcript"  # a probe on sentence embeddings of what is said
    FUSED = "fused"  # an acoustic and a transcript probe, mixed
    FINETUNED = "finetuned"  # a fine-tuned transformers classifier beside the card
    ONNX = "onnx"  # an exported ONNX graph beside the card: one window in, the logits out (onnxruntime)


MODES = {ModelKind.FINETUNED: "finetune", ModelKind.ONNX: "onnx"}  # kinds whose folder holds its own classifier


@dataclass(frozen=True)
class HeadShape:
    """A probe's saved shape and hyper-parameters (its weights are in a safetensors file beside the card)."""

    n_layers: int
    dim: int
    config: ProbeConfig

    def to_dict(self) -> JSONObject:
        return {"n_layers": self.n_layers, "dim": self.dim, **self.config.__dict__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadShape:
        rest = dict(data)
        n_layers, dim = int(rest.pop("n_layers")), int(rest.pop("dim"))
        return cls(n_layers, dim, ProbeConfig(**rest))


@dataclass(frozen=True)
class EncoderRef:
    spec: ModelSpec
    identity: str  # the weights fingerprint at training ("" for a fine-tuned model: its weights are here)

    def to_dict(self) -> JSONObject:
        return {"spec": str(self.spec), "identity": self.identity or None}


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling. ``temperature`` always means what the model's logits are divided by at prediction:
    1 where it is already folded into the weights (``folded``: fine-tuned models) or held by the fusion."""

    temperature: float = 1.0
    fitted_on: str = "none"
    folded: float | None = None  # the temperature folded into the exported classifier's last layer
    into: str | None = None  # the layer it was folded into

    def to_dict(self) -> JSONObject:
        if self.folded is not None:
            out: JSONObject = {"temperature_folded": self.folded}
            return out | ({"into": self.into} if self.into is not None else {}) | {"fitted_on": self.fitted_on}
        return {"temperature": self.temperature, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration:
        if not data:
            return cls()  # models from before calibration
        if "temperature_folded" in data:
            into = data.get("into")
            return cls(1.0, str(data.get("fitted_on", "")), float(data["temperature_folded"]), into and str(into))
        return cls(float(data.get("temperature", 1.0)), str(data.get("fitted_on", "")))


@dataclass(frozen=True)
class NoveltyCard:
    threshold: float
    keeps_held_out: float
    method: str = "mahalanobis"

    def to_dict(self) -> JSONObject:
        return {"method": self.method, "threshold": self.threshold, "keeps_held_out": self.keeps_held_out}


@dataclass(frozen=True)
class Abstain:
    """When the answer is ``unknown``: below ``min_confidence``, or (acoustic probes) too far from every label."""

    min_confidence: float | None
    keeps_correct: float
    fitted_on: str
    novelty: NoveltyCard | None = None

    def to_dict(self) -> JSONObject:
        novelty = self.novelty.to_dict() if self.novelty is not None else None
        return {
            "min_confidence": self.min_confidence,
            "keeps_correct": self.keeps_correct,
            "fitted_on": self.fitted_on,
            "novelty": novelty,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Abstain | None:
        if not data:
            return None
        nov = data.get("novelty")
        novelty = None if nov is None else NoveltyCard(float(nov["threshold"]), float(nov["keeps_held_out"]))
        chosen = data.get("min_confidence")
        return cls(
            None if chosen is None else float(chosen),
            float(data.get("keeps_correct", 0.95)),
            str(data.get("fitted_on", "")),
            novelty,
        )


@dataclass(frozen=True)
class FusionCard:
    temperatures: tuple[float, float]  # acoustic, transcript
    acoustic_weight: float
    text_head: HeadShape

    def to_dict(self) -> JSONObject:
        return {
            "temperatures": list(self.temperatures),
            "acoustic_weight": self.acoustic_weight,
            "text_head": self.text_head.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionCard:
        t_acoustic, t_text = (float(t) for t in data["temperatures"])
        weight = float(data.get("acoustic_weight", 0.5))  # models before the weight mixed evenly
        return cls((t_acoustic, t_text), weight, HeadShape.from_dict(data["text_head"]))


@dataclass(frozen=True)
class OnnxCard:
    """An exported model's graph (``fitting.onnx_export``): raw 16 kHz samples of one window in (``audio``,
    [1, samples]), the logits out (``logits``, [1, labels], before the temperature)."""

    file: str  # beside the card
    family: str  # the encoder family whose front end the graph computes
    min_samples: int  # a shorter window gives no output position
    max_window_s: float | None  # a fixed-length input (Whisper's 30 s): longer windows are refused
    exported_from: str  # the model folder
    max_difference: float  # the largest |logit difference| from the torch path on the export's check windows
    sample_rate: int = 16_000  # of ``audio`` (CLAP's graph reads 48 kHz)
    quantized: str | None = None  # "int8": dynamically quantised weights (not exact)
    int8_agreement: float | None = None  # their top-1 agreement with the fp32 graph on the check recordings
    int8_checked: int = 0  # how many check recordings

    def to_dict(self) -> JSONObject:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnnxCard:
        def optional(key: str, kind: type) -> Any:
            return None if data.get(key) is None else kind(data[key])

        return cls(
            file=str(data["file"]),
            family=str(data["family"]),
            min_samples=int(data["min_samples"]),
            max_window_s=optional("max_window_s", float),
            exported_from=str(data.get("exported_from", "")),
            max_difference=float(data["max_difference"]),
            sample_rate=int(data.get("sample_rate", 16_000)),
            quantized=optional("quantized", str),
            int8_agreement=optional("int8_agreement", float),
            int8_checked=int(data.get("int8_checked", 0)),
        )


@dataclass(frozen=True)
class Training:
    """How the model was made: shown to people (``model``'s summary, the server's /v1/model), not read back."""

    manifest: str
    n_train_recordings: int
    n_failed: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)  # the search table, the fit options, …

    def to_dict(self) -> JSONObject:
        return {
            "manifest": self.manifest,
            "n_train_recordings": self.n_train_recordings,
            "n_failed": self.n_failed,
            **self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Training:
        rest = dict(data)
        manifest, n = str(rest.pop("manifest", "")), int(rest.pop("n_train_recordings", 0))
        return cls(manifest, n, int(rest.pop("n_failed", 0)), rest)


@dataclass(frozen=True)
class ModelCard:
    """``audioclf.json``: what a model folder holds and how it was made."""

    kind: ModelKind
    labels: tuple[str, ...]
    encoder: EncoderRef
    windows: WindowOptions
    training: Training
    head: HeadShape | None = None  # None for a fine-tuned model: its transformers classifier is the head
    metrics: Mapping[str, float] = field(default_factory=dict)
    features: Features = field(default_factory=Features)
    calibration: Calibration | None = None  # None: not a softmax model (multi-label), or from before calibration
    abstain: Abstain | None = None
    fusion: FusionCard | None = None
    thresholds: tuple[float, ...] | None = None  # multi-label: one per label, on its sigmoid probability
    segmenting: Segmenting | None = None  # None: from before segmenters (windows)
    onnx: OnnxCard | None = None  # an exported model's graph
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    audioclf_version: str = __version__

    @property
    def temperature(self) -> float:
        """What the logits are divided by at prediction (1 where none applies or it is folded in)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    def summary(self) -> JSONObject:
        """What a client is told about the model (the server's /v1/model)."""
        return {
            "labels": list(self.labels),
            "encoder": str(self.encoder.spec),
            "task": ModelKind.MULTI_LABEL.value if self.thresholds is not None else "single_label",
            "mode": MODES.get(self.kind, "probe"),
            "windows": dict(self.windows.as_dict()),
            "metrics": dict(self.metrics),
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "min_confidence": self.abstain.min_confidence if self.abstain is not None else None,
            "trained_at": self.created,
            "audioclf_version": self.audioclf_version,
        }

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"format": MODEL_FORMAT}
        if self.kind in MODES:
            out["mode"] = MODES[self.kind]
        out |= {
            "audioclf_version": self.audioclf_version,
            "created": self.created,
            "labels": list(self.labels),
            "encoder": self.encoder.to_dict(),
            "windows": dict(self.windows.as_dict()),
        }
        if self.head is not None:
            out["head"] = self.head.to_dict()
        out |= {"training": self.training.to_dict(), "metrics": dict(self.metrics)}
        if self.thresholds is not None:
            out["task"] = ModelKind.MULTI_LABEL.value
            out["thresholds"] = dict(zip(self.labels, self.thresholds, strict=True))
            out["recording_pooling"] = "max over windows"
        if self.kind not in MODES:
            out["features"] = self.features.to_dict()
        parts = (
            ("calibration", self.calibration),
            ("abstain", self.abstain),
            ("fusion", self.fusion),
            ("segmenting", self.segmenting),
            ("onnx", self.onnx),
        )
        for key, part in parts:
            if part is not None:
                out[key] = part.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Every form of ``audioclf.json`` this project has written (format 1 and its later optional keys).
        Raises KeyError, ValueError or TypeError on a damaged card (``load_model`` says so in one line)."""
        labels = tuple(str(x) for x in data["labels"])
        features = _features(data.get("features") or {"mode": "acoustic"})
        thresholds = data.get("thresholds")
        return cls(
            kind=_kind(data, features),
            labels=labels,
            encoder=EncoderRef(_spec(data["encoder"]["spec"]), str(data["encoder"]["identity"] or "")),
            windows=WindowOptions(**data["windows"]),
            training=Training.from_dict(data.get("training") or {}),
            head=HeadShape.from_dict(data["head"]) if "head" in data else None,
            metrics=dict(data.get("metrics") or {}),
            features=features,
            calibration=Calibration.from_dict(data["calibration"]) if "calibration" in data else None,
            abstain=Abstain.from_dict(data.get("abstain")),
            fusion=FusionCard.from_dict(data["fusion"]) if "fusion" in data else None,
            thresholds=None if thresholds is None else tuple(float(thresholds[label]) for label in labels),
            segmenting=Segmenting.from_dict(data.get("segmenting")),
            onnx=OnnxCard.from_dict(data["onnx"]) if "onnx" in data else None,
            created=str(data.get("created", "")),
            audioclf_version=str(data.get("audioclf_version", "")),
        )


def _spec(text: Any, kinds: tuple[str, ...] = ENCODERS, what: str = "encoder") -> ModelSpec:
    """A spec as the card saved it (the one place a saved spec is parsed)."""
    return ModelSpec.parse(str(text), kinds, what)


def _features(data: Mapping[str, Any]) -> Features:
    transcriber, text_encoder = data.get("transcriber"), data.get("text_encoder")
    return Features(
        **dict(data)
        | {
            "mode": feature_mode(str(data.get("mode", FeatureMode.ACOUSTIC))),
            "transcriber": None if transcriber is None else _spec(transcriber, what="transcriber"),
            "text_encoder": None if text_encoder is None else _spec(text_encoder, TEXT_ENCODERS, "text encoder"),
        }
    )


def _kind(data: Mapping[str, Any], features: Features) -> ModelKind:
    for kind, mode in MODES.items():
        if data.get("mode") == mode:
            return kind
    if data.get("task") == ModelKind.MULTI_LABEL.value:
        return ModelKind.MULTI_LABEL
    if "head" not in data:
        raise KeyError("head")
    return {"fused": ModelKind.FUSED, "transcript": ModelKind.TRANSCRIPT}.get(features.mode, ModelKind.PROBE)
