"""audioclf: labelled audio sources in, a trained, honestly evaluated audio classifier out."""

from __future__ import annotations

# Light to import: the cross-validation flow imports torch and scikit-learn only when it runs.
from audioclf.apps.crossval import CrossvalOptions, CrossvalResult, FoldResult, crossval
from audioclf.version import __version__

__all__ = ["CrossvalOptions", "CrossvalResult", "FoldResult", "__version__", "crossval"]
