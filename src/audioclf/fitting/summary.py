"""What every training run reports, whatever kind of model it made: one type, with what that kind adds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.encoders.spec import ModelSpec
from audioclf.extraction.embed import Failure
from audioclf.model.card import ModelKind

if TYPE_CHECKING:
    from audioclf.fitting.train_finetune import FinetuneRun
    from audioclf.fitting.train_multilabel import MultiLabelRun
    from audioclf.fitting.train_probe import ProbeRun
    from audioclf.fitting.zero_shot import ZeroShotRun


@dataclass(frozen=True)
class TrainSummary:
    kind: ModelKind
    out: Path
    labels: list[str]
    encoder_spec: ModelSpec
    n_train: int  # recordings the final model was fitted on
    failures: list[Failure]  # rows skipped (undecodable, failed downloads), also in out/failures.csv
    seconds: float
    run: ProbeRun | MultiLabelRun | FinetuneRun | ZeroShotRun  # what this kind adds: its search, its epochs, its folds
    fallback_reason: str | None = None  # why the default encoder was replaced by the built-in one
    main: bool = True  # rank 0 (or the only process) of a distributed fine-tuning: the one that reports
