"""`audioclf predict`: label files, folders and URLs; lines or JSON."""

from __future__ import annotations

import argparse
import logging

from audioclf.apps.predict import predict_inputs
from audioclf.cli.options import EXIT_OK, EXIT_PARTIAL, emit, emit_json, fetch_options
from audioclf.errors import DecodeError
from audioclf.training.model_dir import load_model

log = logging.getLogger("audioclf")


def cmd_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    preds, result = predict_inputs(
        model,
        args.inputs,
        args.cache_dir,
        fetch=fetch_options(args, model.windows.max_duration_s),
        top_k=args.top_k,
        timeline=args.timeline,
        progress=not args.quiet,
    )
    if not preds:
        first = result.failures[0].reason
        raise DecodeError(first if len(result.failures) == 1 else f"no file could be read; first: {first}")
    for pred in preds:
        if args.json:
            emit_json(pred.as_dict())
            continue
        top = "  ".join(f"{label} {p:.3f}" for label, p in pred.top)
        emit(f"{pred.source}\t{pred.label}\t{top}")
        for w in pred.timeline:
            emit(f"  {w.start_s:8.1f}-{w.end_s:<8.1f} {w.label} {w.probability:.3f}")
    if not result.failures:
        return EXIT_OK
    for f in result.failures if args.json else []:  # a consumer of the JSON lines sees every input accounted for
        emit_json({"source": f.item.source, "error": f.reason})
    log.warning("%d input(s) could not be read: %s", len(result.failures), "; ".join(f.reason for f in result.failures))
    return EXIT_PARTIAL
