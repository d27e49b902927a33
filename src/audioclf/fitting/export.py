"""A linear probe on an HF encoder's last layer, exported as an exact transformers classification model.

``Wav2Vec2ForSequenceClassification`` (and its siblings of the other waveform families) compute
classifier(mean_t(projector(h_t))).
Mean pooling commutes with the affine projector, so a probe that z-scores the mean-pooled last layer and applies
a linear layer is reproduced exactly with projector = the z-score (a diagonal matrix) and classifier = the
probe's linear layer. Probes with a hidden ReLU layer, or with per-layer z-scoring before a weighted layer sum,
have no exact counterpart and are not exported.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from audioclf.encoders.hf_families import WaveformFamily, family_of
from audioclf.encoders.spec import HF, ModelSpec
from audioclf.errors import AudioclfError
from audioclf.fitting.finetune import FinetuneOptions, load_classifier
from audioclf.fitting.probe import ProbeHead
from audioclf.model.probe_config import LAST

log = logging.getLogger(__name__)

EXPORT_DIR = "transformers"


def exportable(spec: ModelSpec, head: ProbeHead) -> bool:
    config = head.config
    last = config.layer == LAST or config.layer == str(head.mean.shape[0] - 1)
    return spec.kind == HF and config.hidden == 0 and last


def export_probe(
    spec: ModelSpec,
    head: ProbeHead,
    labels: list[str],
    out: Path,
    temperature: float = 1.0,
    *,
    multi_label: bool = False,
) -> Path | None:
    """Write ``out/transformers`` (loadable by ``transformers.pipeline``) when the probe maps exactly; a
    multi-label probe is saved with ``problem_type="multi_label_classification"`` (sigmoid outputs)."""
    shutil.rmtree(out / EXPORT_DIR, ignore_errors=True)  # never leave an export of an earlier model
    if not exportable(spec, head):
        log.debug("probe not exported as a transformers model: only linear probes on the last layer map exactly")
        return None
    dim = head.mean.shape[1]
    try:
        extractor, model = load_classifier(spec, labels, FinetuneOptions(), classifier_proj_size=dim)
    except AudioclfError as exc:
        log.warning("transformers export skipped: %s", exc)
        return None
    if not isinstance(family_of(model, extractor), WaveformFamily):  # Whisper's head pools the padding too
        log.info("transformers export skipped: %s does not pool like the probe", type(model).__name__)
        return None
    if getattr(model, "projector", None) is None or getattr(model.config, "use_weighted_layer_sum", False):
        log.info("transformers export skipped: %s has no projector/classifier head", type(model).__name__)
        return None
    linear = head.classifier[-1]  # type: ignore[index]
    assert isinstance(linear, torch.nn.Linear)
    with torch.no_grad():
        scale = 1.0 / head.std[-1]
        model.projector.weight.copy_(torch.diag(scale))
        model.projector.bias.copy_(-head.mean[-1] * scale)
        model.classifier.weight.copy_(linear.weight / temperature)  # the calibration folds into the classifier
        model.classifier.bias.copy_(linear.bias / temperature)
    if multi_label:
        model.config.problem_type = "multi_label_classification"
    target = out / EXPORT_DIR
    tmp = out / f".{EXPORT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    extractor.save_pretrained(tmp)
    tmp.rename(target)
    return target
