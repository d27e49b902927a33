"""The one entry to training: a manifest, an output folder and the options of one way of training. The kind
of options (a probe's ``TrainOptions`` or ``FinetuneOptions``) is the choice, made once where the options are
built (the CLI's ``--mode``, the API's ``mode=``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.probe import EpochStats
from audioclf.fitting.summary import TrainSummary
from audioclf.fitting.train_probe import TrainOptions

Options = TrainOptions | FinetuneOptions


def train(
    manifest: Path, out: Path, options: Options, on_epoch: Callable[[EpochStats], None] | None = None
) -> TrainSummary:
    """Train on ``manifest``'s non-test rows into ``out``: a probe on cached embeddings, or a fine-tuning run."""
    if isinstance(options, FinetuneOptions):
        from audioclf.fitting.train_finetune import finetune  # accelerate and the trainer: only when asked

        return finetune(manifest, out, options, on_epoch)
    from audioclf.fitting.train_probe import train as train_probe

    return train_probe(manifest, out, options, on_epoch)
