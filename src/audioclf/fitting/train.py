"""The one entry to training: a manifest, an output folder and the options of one way of training. The kind
of options (a probe's ``TrainOptions`` or ``FinetuneOptions``) is the choice, made once where the options are
built (the CLI's ``--mode``, the API's ``mode=``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audioclf.errors import TrainingError
from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.probe import EpochStats
from audioclf.fitting.summary import TrainSummary
from audioclf.fitting.train_probe import TrainOptions
from audioclf.fitting.zero_shot import ZeroShotOptions

Options = TrainOptions | FinetuneOptions | ZeroShotOptions


def train(
    manifest: Path | None, out: Path, options: Options, on_epoch: Callable[[EpochStats], None] | None = None
) -> TrainSummary:
    """Train on ``manifest``'s non-test rows into ``out``: a probe on cached embeddings, a fine-tuning run, or
    a zero-shot model from its prompts (the manifest, optional there, fits its temperature)."""
    if isinstance(options, ZeroShotOptions):
        from audioclf.fitting.zero_shot import train_zero_shot

        run = train_zero_shot(manifest, out, options)
        failures = run.embed.failures if run.embed is not None else []
        return TrainSummary(
            run.kind, out, run.labels, run.encoder_spec, 0, failures, run.seconds, run, run.fallback_reason
        )
    if manifest is None:
        raise TrainingError("no manifest: give labelled rows to train on, or label prompts for a zero-shot model")
    if isinstance(options, FinetuneOptions):
        from audioclf.fitting.train_finetune import finetune  # accelerate and the trainer: only when asked

        return finetune(manifest, out, options, on_epoch)
    from audioclf.fitting.train_probe import train as train_probe

    return train_probe(manifest, out, options, on_epoch)
