"""`audioclf suggest`: the next windows worth labelling, from a quick model fitted on the labels so far."""

from __future__ import annotations

import argparse

from audioclf.annotation.labels import Labels, Mode
from audioclf.annotation.scorers import TrainedScorer
from audioclf.annotation.suggest import DEFAULT_STRATEGY, Strategy, suggest
from audioclf.cli.options import emit, emit_json
from audioclf.corpus.index import Index
from audioclf.model.folder import load_model


def cmd_suggest(args: argparse.Namespace) -> int:
    index = Index.open(args.index, cache_dir=args.cache_dir)
    labels = Labels(args.labels, index.card.id, Mode.MULTI if args.multi_label else None)
    strategy = Strategy.parse(args.strategy) if args.strategy else DEFAULT_STRATEGY
    scorer = None if args.model is None else TrainedScorer(load_model(args.model), index)
    done = suggest(index, labels, args.n, strategy, scorer=scorer, annotator=args.annotator, seed=args.seed)
    if done.suggestions:
        labels.lease([s.window_id for s in done.suggestions], args.annotator)
    for s in done.suggestions:
        if args.json:
            emit_json(s.to_dict())
        else:
            guess = f"  {s.guess} {s.score:.2f}" if s.guess is not None and s.score is not None else ""
            emit(f"{s.window_id:>8}  {s.start_s:8.2f}-{s.end_s:<8.2f} {s.source}{guess}")
    if not args.json:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(labels.counts().items())) or "none yet"
        emit(f"{len(done.suggestions)} suggestions ({done.strategy}); labelled so far: {counts}")
    return 0
