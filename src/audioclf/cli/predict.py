"""`audioclf predict`: label files, folders and URLs; lines or JSON, segment files and timeline plots."""

from __future__ import annotations

import argparse
import logging
import sys

from audioclf.cli.options import (
    EXIT_OK,
    EXIT_PARTIAL,
    emit,
    emit_json,
    fetch_options,
    min_confidence,
    predict_windows,
)
from audioclf.errors import AudioclfError, DecodeError
from audioclf.evaluation.segments import SegmentOptions
from audioclf.labelling.inputs import predict_all
from audioclf.labelling.prediction import Failed, Prediction, PredictOptions
from audioclf.labelling.segment_files import check_format, output_stem, render, write_segment_files
from audioclf.model.folder import TrainedModel, load_model

log = logging.getLogger("audioclf")


def cmd_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    fmt = check_format(args.format) if args.format else None
    if args.plot and args.out is None:
        raise AudioclfError("--plot writes one PNG per input: give a folder with --out")
    options = predict_options(args, model)
    done = predict_all(
        model,
        args.inputs,
        args.cache_dir,
        options,
        fetch=fetch_options(args, (options.windows or model.windows).max_duration_s),
        progress=not args.quiet,
    )
    preds, failed = done.predictions, [r for r in done.results if isinstance(r, Failed)]
    if not preds:
        first = failed[0].error if failed else "no audio in the given inputs; pass audio files, folders or URLs"
        raise DecodeError(first if len(failed) == 1 else f"no file could be read; first: {first}")
    if fmt is not None and args.out is None:
        sys.stdout.write(render(preds, fmt))
    else:
        _emit_lines(preds, args.json)
    if args.out is not None:
        written = write_segment_files(preds, fmt or "csv", args.out) if options.segments else []
        for pred in preds if args.plot else []:
            from audioclf.labelling.timeline_plot import write_timeline_plot  # matplotlib: only when plotting

            written.append(write_timeline_plot(pred, args.out / f"{output_stem(pred.source)}.png"))
        log.info("wrote %d file(s) to %s", len(written), args.out)
    if not failed:
        return EXIT_OK
    for f in failed if args.json else []:  # a consumer of the JSON lines sees every input accounted for
        emit_json(f.as_dict())
    log.warning("%d input(s) could not be read: %s", len(failed), "; ".join(f.error for f in failed))
    return EXIT_PARTIAL


def predict_options(args: argparse.Namespace, model: TrainedModel) -> PredictOptions:
    wanted = args.segments or args.format is not None or args.out is not None
    segments = SegmentOptions.parse(args.smooth, args.min_duration, args.segmenter)  # checked even when not used
    return PredictOptions(
        top_k=args.top_k,
        timeline=args.timeline,
        segments=segments if wanted else None,
        windows=predict_windows(args, model),
        min_confidence=min_confidence(args.min_confidence, model),
    )


def _emit_lines(preds: list[Prediction], as_json: bool) -> None:
    for pred in preds:
        if as_json:
            emit_json(pred.as_dict())
            continue
        top = "  ".join(f"{label} {p:.3f}" for label, p in pred.top)
        label = f"unknown ({pred.unknown_reason}; best guess {pred.best_guess})" if pred.unknown_reason else pred.label
        emit(f"{pred.source}\t{label}\t{top}")
        for w in pred.timeline:
            emit(f"  {w.start_s:8.1f}-{w.end_s:<8.1f} {w.label} {w.probability:.3f}")
        for s in pred.segments:
            emit(f"  {s.start_s:8.2f}-{s.end_s:<8.2f} {s.label} {s.mean_probability:.3f}")
