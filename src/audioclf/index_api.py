"""The public ``audioclf.Index``: the corpus index (``audioclf.corpus.index.Index``: build, open, search) with
the labelling loop on it, so a notebook drives search -> label -> suggest -> train in one object:

    idx = audioclf.Index.build("corpus.idx", ["videos/"], encoder="builtin")
    labels = idx.labels("labels.csv")                       # durable answers; labels.csv is what train reads
    for s in idx.suggest(labels, n=10).suggestions:         # the quick model's next windows
        labels.add(idx.store.rows([s.window_id])[s.window_id], "label", "bird")
    idx.suggest(labels, strategy="margin", model="runs/x")  # a trained probe's unsure windows, to correct
"""

from __future__ import annotations

import os
from pathlib import Path

from audioclf.annotation.labels import Labels, Mode
from audioclf.annotation.scorers import TrainedScorer
from audioclf.annotation.suggest import DEFAULT_STRATEGY, Strategy, Suggested, suggest
from audioclf.corpus import index as corpus_index
from audioclf.model.folder import TrainedModel, load_model


class Index(corpus_index.Index):
    """A corpus index with ``labels`` and ``suggest``; ``Index.build`` and ``Index.open`` return one."""

    def labels(self, path: str | os.PathLike[str], *, multi_label: bool | None = None) -> Labels:
        """The labels made on this index at ``path`` (a manifest; its answers log sits beside it), created when
        missing (multi-label when asked; an existing file keeps its kind and refuses the other)."""
        mode = None if multi_label is None else Mode.MULTI if multi_label else Mode.SINGLE
        return Labels(Path(path), self.card.id, mode)

    def suggest(
        self,
        labels: Labels,
        n: int = 10,
        strategy: str | Strategy = DEFAULT_STRATEGY,
        *,
        model: str | os.PathLike[str] | TrainedModel | None = None,
        annotator: str = "",
        seed: int = 0,
    ) -> Suggested:
        """The next ``n`` windows to label (none answered, spread over groups and recordings), scored by the
        quick model of ``labels`` or by a trained ``model`` (a folder; a probe on this index's encoder)."""
        chosen = strategy if isinstance(strategy, Strategy) else Strategy.parse(strategy)
        trained = model if isinstance(model, TrainedModel) or model is None else load_model(Path(model))
        scorer = None if trained is None else TrainedScorer(trained, self)
        return suggest(self, labels, n, chosen, scorer=scorer, annotator=annotator, seed=seed)
