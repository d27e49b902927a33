"""Every training default, written once: the option types take them, and the command line's help shows them
(this module imports nothing, so the command line stays light)."""

from __future__ import annotations

# a probe (fitting.probe.FitOptions, fitting.train_probe.TrainOptions, fitting.selection)
PROBE_MAX_EPOCHS = 200
PROBE_PATIENCE = 20
FOLDS = 5  # grouped cross-validation folds that choose the probe
LAYER = "auto"
FEATURES = "acoustic"

# fine-tuning (fitting.finetune.FinetuneOptions)
FINETUNE_EPOCHS = 10
FINETUNE_LR = 3e-5
FINETUNE_PATIENCE = 3
BATCH_SIZE = 8
ACCUM = 1
VAL_FRACTION = 0.2
