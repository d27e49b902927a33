"""What a probe's training writes into its folder: the model card, the novelty detector, the digests of the
training rows, the arrays and the transformers export (the card last, so a folder with one is complete)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.encoders.loader import Encoder
from audioclf.fitting.export import export_probe
from audioclf.fitting.novelty import fit_abstain
from audioclf.fitting.probe import ProbeHead
from audioclf.model.card import Calibration, EncoderRef, HeadShape, ModelCard, ModelKind, Training
from audioclf.model.folder import TrainedModel, fusion_card, save_model
from audioclf.model.fusion import Fusion
from audioclf.model.novelty import CONTEXT_NOVELTY_NAME
from audioclf.model.probe import HeadArrays
from audioclf.model.training_set import TrainingSet
from audioclf.speech.features import FeatureMode, Features
from audioclf.speech.text_features import TextView, save_tfidf

if TYPE_CHECKING:
    from audioclf.fitting.train_probe import ProbeRun, TrainOptions, ViewFit


def save_probe(
    manifest: Path,
    out: Path,
    summary: ProbeRun,
    fitted: tuple[ViewFit, Fusion | None, Calibration],
    used: tuple[Encoder, TextView | None],
    options: TrainOptions,
) -> None:
    """The card, the unknown-answer thresholds (novelty fit), the arrays and the export, card last."""
    (main, fusion, cal), (encoder, view) = fitted, used
    head = main.head
    card = probe_card(manifest, summary, encoder.identity, head, options)
    card = replace(card, features=view.card() if view is not None else Features(), calibration=cal)
    novelty, arrays = None, HeadArrays.from_head(head)
    if fusion is None:  # a fused model's own temperatures and weight decide; its probabilities are not these
        oof = main.selection.chosen.oof
        abstain, novelty = fit_abstain(arrays, main.data, oof, cal.temperature, acoustic=view is None)
        card = replace(card, abstain=abstain)
    else:
        card = replace(card, kind=ModelKind.FUSED, fusion=fusion_card(fusion))
    if view is not None:
        save_tfidf(view, out)
    if novelty is not None:
        novelty.save(out)
    if summary.context_novelty is not None:
        summary.context_novelty.save(out, CONTEXT_NOVELTY_NAME)
    TrainingSet.of(main.data.items).save(out)
    save_model(out, TrainedModel(card, arrays, fusion=fusion, context_head=summary.context_head))
    if view is None:  # a transformers export classifies audio alone: not possible with text features
        export_probe(encoder.spec, head, summary.labels, out, temperature=cal.temperature)


def probe_card(manifest: Path, s: ProbeRun, encoder_identity: str, head: ProbeHead, options: TrainOptions) -> ModelCard:
    chosen = next(c for c in s.search if c.config == s.config)
    details = {
        "cv_folds": s.n_folds,
        "fit": asdict(options.fit),
        "search": [c.as_dict() for c in s.search],
        "epochs": s.fit.best_epoch,  # of the final fit (0: logistic regression, no epochs)
        "final": "refit on all training recordings",
        "fallback_reason": s.fallback_reason,
    }
    kind = ModelKind.TRANSCRIPT if options.features.mode is FeatureMode.TRANSCRIPT else ModelKind.PROBE
    return ModelCard(
        kind=kind,
        labels=tuple(s.labels),
        encoder=EncoderRef(s.encoder_spec, encoder_identity),
        windows=options.windows,
        training=Training(str(manifest), s.n_train, len(s.embed.failures), details),
        head=HeadShape(head.mean.shape[0], head.mean.shape[1], s.config),
        metrics={
            "cv_accuracy": float(chosen.accuracy.mean()),
            "cv_macro_f1": float(chosen.f1.mean()),
            "cv_macro_f1_std": float(chosen.f1.std()),
            "cv_log_loss": float(chosen.log_loss.mean()),
        },
        segmenting=s.segmenting,
    )
