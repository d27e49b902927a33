"""The saved model directory: head weights in safetensors + audioclf.json, enough to predict with nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from audioclf.encoders.spec import ModelSpec
from audioclf.errors import AudioclfError, ModelError
from audioclf.fileio import write_json_atomic
from audioclf.io.audio import WindowOptions
from audioclf.model.card import MODEL_FORMAT, MODES, FusionCard, HeadShape, ModelCard, ModelKind
from audioclf.model.fusion import Fusion
from audioclf.model.novelty import CONTEXT_NOVELTY_NAME, Novelty
from audioclf.model.probe import HeadArrays
from audioclf.version import __version__

CONFIG_NAME = "audioclf.json"
WEIGHTS_NAME = "head.safetensors"
TEXT_WEIGHTS_NAME = "text_head.safetensors"  # the transcript view's probe of a fused model
CONTEXT_WEIGHTS_NAME = "context_head.safetensors"  # the probe refitted with short clips in context


@dataclass(frozen=True)
class TrainedModel:
    """A loaded model folder: its card and the arrays its kind applies."""

    card: ModelCard
    head: HeadArrays | None  # None for a fine-tuned or exported model: the transformers/ONNX model in `path` does
    path: Path | None = None
    fusion: Fusion | None = None  # a fused model: the transcript view's probe and the calibration
    context_head: HeadArrays | None = None  # the probe refitted with clips in context: the events segmenter's

    @property
    def kind(self) -> ModelKind:
        return self.card.kind

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def encoder_spec(self) -> ModelSpec:
        return self.card.encoder.spec

    @property
    def encoder_identity(self) -> str:
        return self.card.encoder.identity

    @property
    def windows(self) -> WindowOptions:
        return self.card.windows

    @property
    def finetuned(self) -> bool:
        return self.card.kind is ModelKind.FINETUNED

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax (temperature scaling); 1 for older models."""
        return self.card.temperature

    @property
    def thresholds(self) -> np.ndarray | None:
        """Multi-label models: each label's decision threshold on its sigmoid probability (None: one label)."""
        chosen = self.card.thresholds
        return None if chosen is None else np.array(chosen)

    @cached_property
    def novelty(self) -> Novelty | None:
        """The Mahalanobis novelty detector saved at training, if the model has one (read once)."""
        abstain = self.card.abstain
        if abstain is None or abstain.novelty is None or self.path is None:
            return None
        return Novelty.load(self.path, abstain.novelty.threshold)

    @cached_property
    def context_novelty(self) -> Novelty | None:
        """The novelty detector of the head trained with clips in context (what the events segmenter asks)."""
        chosen = self.card.segmenting
        if chosen is None or chosen.context_novelty is None or self.path is None:
            return None
        return Novelty.load(self.path, chosen.context_novelty, CONTEXT_NOVELTY_NAME)

    @property
    def has_min_confidence(self) -> bool:
        return self.card.abstain is not None and self.card.abstain.min_confidence is not None

    @property
    def min_confidence(self) -> float:
        """The threshold chosen at training below which the answer is ``unknown``."""
        chosen = self.card.abstain.min_confidence if self.card.abstain is not None else None
        if chosen is None:
            raise ModelError(
                f"{self.path}: this model has no confidence threshold chosen at training; retrain it, or give a "
                "probability from 0 to 1",
                option="min_confidence",
            )
        return chosen


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
    if model.context_head is not None:
        heads[CONTEXT_WEIGHTS_NAME] = model.context_head
    for name, head in heads.items():
        head.save(out / name)
    write_card(out, model.card)


def write_card(folder: Path, card: ModelCard) -> None:
    """The one writer of ``audioclf.json``."""
    write_json_atomic(folder / CONFIG_NAME, card.to_dict())


def fusion_card(fusion: Fusion) -> FusionCard:
    head = fusion.text_head
    return FusionCard(fusion.temperatures, fusion.weight, HeadShape(head.n_layers, head.dim, head.config))


def load_model(path: Path) -> TrainedModel:
    """Read a model folder written by ``save_model`` (or a fine-tuning run); every problem is a one-line
    ModelError."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise ModelError(f"{path}: not an audioclf model (no {CONFIG_NAME}); train one with 'audioclf train'")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            version = data.get("audioclf_version") if isinstance(data, dict) else None
            found = data.get("format") if isinstance(data, dict) else None
            raise ModelError(
                f"{path}: model format {found!r} from audioclf {version} is not supported by {__version__} "
                f"(format {MODEL_FORMAT}); retrain it"
            )
        card = ModelCard.from_dict(data)
    except ModelError:
        raise
    except (ValueError, KeyError, TypeError, AudioclfError) as exc:
        raise ModelError(f"{config_path}: damaged or incompatible model config ({exc}); retrain the model") from exc
    if card.kind in MODES:  # the classifier is the folder's own (transformers or ONNX)
        return TrainedModel(card, None, path)
    assert card.head is not None
    n_labels = len(card.labels)
    head = HeadArrays.load(path / WEIGHTS_NAME, card.head.n_layers, card.head.dim, n_labels, card.head.config)
    fusion = None
    if card.fusion is not None:
        text = card.fusion.text_head
        text_head = HeadArrays.load(path / TEXT_WEIGHTS_NAME, text.n_layers, text.dim, n_labels, text.config)
        fusion = Fusion(text_head, card.fusion.temperatures, card.fusion.acoustic_weight)
    context = None
    if card.segmenting is not None and card.segmenting.context_head:
        shape = card.head
        context = HeadArrays.load(path / CONTEXT_WEIGHTS_NAME, shape.n_layers, shape.dim, n_labels, shape.config)
    return TrainedModel(card, head, path, fusion, context)
