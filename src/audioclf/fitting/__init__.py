"""Fitting models: the probe search (selection, logreg, probe), calibration (fusion), the novelty fit, multi-label
probes, fine-tuning, and the three training flows that save a model folder (train_probe, train_multilabel,
train_finetune). What applies a fitted model lives in ``audioclf.model``."""
