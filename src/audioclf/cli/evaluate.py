"""`audioclf evaluate`: score a model on a labelled manifest and print the summary."""

from __future__ import annotations

import argparse

from audioclf.cli.options import emit, fetch_options, min_confidence, predict_windows
from audioclf.evaluation.report import summary_lines
from audioclf.evaluation.segments import SegmentOptions
from audioclf.model.folder import load_model
from audioclf.scoring.manifest import evaluate_model


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    fetch = fetch_options(args, model.windows.max_duration_s)
    done = evaluate_model(
        model,
        args.manifest,
        args.cache_dir,
        split=args.split,
        out=args.out,
        fetch=fetch,
        windows=predict_windows(args, model),
        segments=SegmentOptions.parse(args.smooth, args.min_duration, args.segmenter),
        min_confidence=min_confidence(args.min_confidence, model),
        include_training=args.include_training,
        progress=not args.quiet,
    )
    for line in summary_lines(done.report):
        emit(line)
    seen = done.seen.line()
    if seen is not None:
        emit(f"training    {seen}")
    see = f" — see {done.out / 'failures.csv'}" if done.embed.failures else ""
    emit(f"data        {done.embed.summary()}{see}")
    emit("wrote       " + ", ".join(str(p) for p in done.paths))
    return 0
