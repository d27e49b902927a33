"""The saved model directory: head weights in safetensors + audioclf.json, enough to predict with nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.errors import ModelError
from audioclf.fileio import write_json_atomic
from audioclf.io.audio import WindowOptions
from audioclf.training.fused_views import Fusion
from audioclf.training.head_arrays import HeadArrays
from audioclf.training.novelty_detector import Novelty
from audioclf.training.probe_config import ProbeConfig
from audioclf.version import __version__

MODEL_FORMAT = 1
CONFIG_NAME = "audioclf.json"
WEIGHTS_NAME = "head.safetensors"
TEXT_WEIGHTS_NAME = "text_head.safetensors"  # the transcript view's probe of a fused model


@dataclass(frozen=True)
class TrainedModel:
    head: HeadArrays | None  # None for a fine-tuned model: the transformers model in `path` classifies
    labels: list[str]
    encoder_spec: str
    encoder_identity: str
    windows: WindowOptions
    meta: dict[str, Any]  # the whole audioclf.json
    path: Path | None = None
    fusion: Fusion | None = None  # --features fused: the transcript view's probe and the calibration

    @property
    def finetuned(self) -> bool:
        return self.meta.get("mode") == "finetune"

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax (temperature scaling); 1 for older models."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))

    @property
    def thresholds(self) -> np.ndarray | None:
        """Multi-label models: each label's decision threshold on its sigmoid probability (None: one label)."""
        chosen = self.meta.get("thresholds")
        return None if chosen is None else np.array([float(chosen[label]) for label in self.labels])

    @cached_property
    def novelty(self) -> Novelty | None:
        """The Mahalanobis novelty detector saved at training, if the model has one (read once)."""
        meta = (self.meta.get("abstain") or {}).get("novelty")
        if meta is None or self.path is None:
            return None
        return Novelty.load(self.path, meta)

    @property
    def min_confidence(self) -> float:
        """The threshold chosen at training below which the answer is ``unknown``."""
        chosen = self.meta.get("abstain", {}).get("min_confidence")
        if chosen is None:
            raise ModelError(
                f"{self.path}: this model has no confidence threshold chosen at training; retrain it, or give a "
                "probability from 0 to 1",
                option="min_confidence",
            )
        return float(chosen)


def prepare_out_dir(out: Path, *, force: bool) -> None:
    """Refuse to overwrite an existing model unless ``force``."""
    if (out / CONFIG_NAME).exists() and not force:
        raise ModelError(f"{out}: a model already exists there; overwrite it or choose another folder", option="force")
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder; choose another output folder", option="out")
    if force and (out / CONFIG_NAME).exists():
        (out / CONFIG_NAME).unlink()  # the config goes first: a half-replaced folder never looks complete
    out.mkdir(parents=True, exist_ok=True)


def save_model(out: Path, model: TrainedModel) -> None:
    """Write the weights, then the config last: a folder with audioclf.json is always complete."""
    assert model.head is not None, "fine-tuned models are saved by finetune_run"
    heads = {WEIGHTS_NAME: model.head, **({TEXT_WEIGHTS_NAME: model.fusion.text_head} if model.fusion else {})}
    for name, head in heads.items():
        head.save(out / name)
    write_json_atomic(out / CONFIG_NAME, model.meta)


def fusion_meta(fusion: Fusion) -> dict[str, Any]:
    head = fusion.text_head
    shape = {"n_layers": head.n_layers, "dim": head.dim}
    return {
        "temperatures": list(fusion.temperatures),
        "acoustic_weight": fusion.weight,
        "text_head": {**shape, **head.config.__dict__},
    }


def build_meta(
    *,
    labels: list[str],
    encoder_spec: str,
    encoder_identity: str | None,
    windows: WindowOptions,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    head: tuple[tuple[int, int], ProbeConfig] | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """audioclf.json of a model folder, the one writer for probes (``head``: its shape and config) and
    fine-tuned models (``mode="finetune"``: the weights are the transformers checkpoint beside it)."""
    meta: dict[str, Any] = {"format": MODEL_FORMAT}
    if mode is not None:
        meta["mode"] = mode
    meta |= {
        "audioclf_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": labels,
        "encoder": {"spec": encoder_spec, "identity": encoder_identity},
        "windows": windows.as_dict(),
    }
    if head is not None:
        (n_layers, dim), config = head
        meta["head"] = {"n_layers": n_layers, "dim": dim, **config.__dict__}
    meta["training"] = training
    if metrics is not None:
        meta["metrics"] = metrics
    return meta


def load_model(path: Path) -> TrainedModel:
    """Read a model folder written by ``save_model``; every problem is a one-line ModelError."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise ModelError(f"{path}: not an audioclf model (no {CONFIG_NAME}); train one with 'audioclf train'")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{path}: model format {meta.get('format')!r} from audioclf {meta.get('audioclf_version')} "
                f"is not supported by {__version__} (format {MODEL_FORMAT}); retrain it"
            )
        if meta.get("mode") == "finetune":
            labels = [str(x) for x in meta["labels"]]
            windows = WindowOptions(**meta["windows"])
            return TrainedModel(None, labels, str(meta["encoder"]["spec"]), "", windows, meta, path)
        head_meta = dict(meta["head"])
        n_layers, dim = int(head_meta.pop("n_layers")), int(head_meta.pop("dim"))
        config = ProbeConfig(**head_meta)
        labels = [str(x) for x in meta["labels"]]
        windows = WindowOptions(**meta["windows"])
        encoder = meta["encoder"]
    except ModelError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{config_path}: damaged or incompatible model config ({exc}); retrain the model") from exc
    head = HeadArrays.load(path / WEIGHTS_NAME, n_layers, dim, len(labels), config)
    fusion = _load_fusion(path, meta, len(labels)) if "fusion" in meta else None
    return TrainedModel(head, labels, str(encoder["spec"]), str(encoder["identity"]), windows, meta, path, fusion)


def _load_fusion(path: Path, meta: dict[str, Any], n_classes: int) -> Fusion:
    try:
        spec = dict(meta["fusion"]["text_head"])
        n_layers, dim = int(spec.pop("n_layers")), int(spec.pop("dim"))
        t_acoustic, t_text = (float(t) for t in meta["fusion"]["temperatures"])
        weight = float(meta["fusion"].get("acoustic_weight", 0.5))  # models before the weight mixed evenly
        config = ProbeConfig(**spec)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path / CONFIG_NAME}: damaged fusion settings ({exc}); retrain the model") from exc
    text_head = HeadArrays.load(path / TEXT_WEIGHTS_NAME, n_layers, dim, n_classes, config)
    return Fusion(text_head, (t_acoustic, t_text), weight)
