"""Cross-validation of the whole train → evaluate loop over grouped folds: ``run``, ``folds``, ``report``."""
