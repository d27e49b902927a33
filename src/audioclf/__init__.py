"""audioclf: labelled audio sources in, a trained, honestly evaluated audio classifier out.

The API (see ``audioclf.api``): ``train``, ``zero_shot`` (a model from label names), ``load``, ``evaluate``
and ``Model.predict``; ``crossval`` for a whole cross-validation; ``Index`` to index a corpus and search it by
example or by words; ``Labels`` and ``suggest`` to label it.
Names are imported on first use, so ``import audioclf`` stays light.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import TYPE_CHECKING, Any

from audioclf.version import __version__

_EXPORTS = {
    "train": "audioclf.api",
    "zero_shot": "audioclf.api",
    "load": "audioclf.api",
    "evaluate": "audioclf.api",
    "Model": "audioclf.api",
    "Report": "audioclf.api",
    "Prediction": "audioclf.labelling.prediction",
    "Failed": "audioclf.labelling.prediction",
    "Segment": "audioclf.evaluation.segments",
    "crossval": "audioclf.crossvalidation.run",
    "CrossvalOptions": "audioclf.crossvalidation.run",
    "CrossvalResult": "audioclf.crossvalidation.run",
    "FoldResult": "audioclf.crossvalidation.run",
    "AudioclfError": "audioclf.errors",
    "Index": "audioclf.index_api",
    "Labels": "audioclf.annotation.labels",
    "suggest": "audioclf.annotation.suggest",
    "Hit": "audioclf.corpus.search",
}

__all__ = [
    "AudioclfError",
    "CrossvalOptions",
    "CrossvalResult",
    "Failed",
    "FoldResult",
    "Hit",
    "Index",
    "Labels",
    "Model",
    "Prediction",
    "Report",
    "Segment",
    "__version__",
    "crossval",
    "evaluate",
    "load",
    "suggest",
    "train",
    "zero_shot",
]

# A library logs and never prints: without a handler of the application's, Python's last-resort handler would
# print warnings (a skipped input) to stderr.
logging.getLogger("audioclf").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from audioclf.annotation.labels import Labels
    from audioclf.annotation.suggest import suggest
    from audioclf.api import Model, Report, evaluate, load, train, zero_shot
    from audioclf.corpus.search import Hit
    from audioclf.crossvalidation.run import CrossvalOptions, CrossvalResult, FoldResult, crossval
    from audioclf.errors import AudioclfError
    from audioclf.evaluation.segments import Segment
    from audioclf.index_api import Index
    from audioclf.labelling.prediction import Failed, Prediction


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'audioclf' has no attribute {name!r}")
