"""The command line's argument parser: every command, its flags and their help (no command runs here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audioclf.cli.arg_groups import common_args, fetch_args, precision_arg, ray_args, server_args, window_args
from audioclf.cli.arg_types import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, int_at_least
from audioclf.cli.corpus_parser import add_corpus_parsers
from audioclf.evaluation.segments import DEFAULT_SMOOTH
from audioclf.fitting import defaults as D
from audioclf.labelling.segment_files import FORMATS
from audioclf.speech.features import FEATURES
from audioclf.version import __version__


def _finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning (--mode finetune)")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=None, help=f"windows per step (default {D.BATCH_SIZE})")
    g.add_argument("--accum", type=POSITIVE_INT, default=None, help=f"gradient accumulation steps (default {D.ACCUM})")
    g.add_argument("--freeze-layers", type=COUNT, default=None, help="also freeze the first N transformer layers")
    g.add_argument("--train-feature-encoder", action="store_true", help="do not freeze the convolutional front end")
    g.add_argument("--gradient-checkpointing", action="store_true", help="save memory on long windows")
    g.add_argument("--augment", action="store_true", help="speed perturbation, noise and gain while training")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument(
        "--stop-after", type=POSITIVE_INT, default=None, help="stop after this epoch (continue with --resume)"
    )


def _feature_args(p: argparse.ArgumentParser) -> None:
    """The encoder and what the probe learns from."""
    p.add_argument(
        "--encoder",
        default=None,
        help="builtin | hf:<hub id or local dir> | whisper:<size or dir> (default: wav2vec2-base-960h)",
    )
    p.add_argument(
        "--features",
        choices=FEATURES,
        default=None,
        help=f"what the probe learns from: the sound, what is said, or both (default {D.FEATURES})",
    )
    p.add_argument(
        "--transcriber",
        default=None,
        help="whisper:<size or dir> | hf:<CTC model> for --features transcript/fused (default: the encoder)",
    )
    p.add_argument(
        "--text-encoder", default="minilm", help="minilm | tfidf | hf:<sentence encoder> (default %(default)s)"
    )


def _fit_args(p: argparse.ArgumentParser, crossval: bool) -> None:
    """How the probe or the fine-tuning is fitted (each default lives in fitting/defaults.py)."""
    p.add_argument("--layer", default=None, help=f"auto | last | weighted | <index> (default {D.LAYER})")
    p.add_argument("--hidden", type=COUNT, default=None, help="hidden units of the head (0 = linear; default: search)")
    p.add_argument(
        "--lr", type=POSITIVE, default=None, help=f"learning rate (probe: searched; finetune: {D.FINETUNE_LR:g})"
    )
    p.add_argument(
        "--epochs",
        type=POSITIVE_INT,
        default=None,
        help=f"maximum epochs (probe {D.PROBE_MAX_EPOCHS}, finetune {D.FINETUNE_EPOCHS})",
    )
    p.add_argument(
        "--patience",
        type=POSITIVE_INT,
        default=None,
        help=f"early-stopping patience (probe {D.PROBE_PATIENCE}, finetune {D.FINETUNE_PATIENCE})",
    )
    p.add_argument(
        "--inner-folds" if crossval else "--folds",  # crossval's --folds are the outer folds
        dest="folds",
        type=int_at_least(2),
        default=None,
        metavar="K",
        help=f"grouped cross-validation folds that choose the probe (default {D.FOLDS})"
        + (", inside each training fold" if crossval else ""),
    )
    p.add_argument(
        "--val-fraction",
        type=FRACTION,
        default=None,
        help=f"finetune: grouped validation share (default {D.VAL_FRACTION})",
    )


def _train_args(p: argparse.ArgumentParser, out_help: str, force_help: str, *, crossval: bool = False) -> None:
    """The options of ``train``, which ``crossval`` shares (without --test-size and the fine-tuning ones)."""
    if crossval:
        p.add_argument("--manifest", type=Path, required=True, help="CSV/JSONL manifest or a folder of label folders")
    else:
        p.add_argument(
            "--manifest",
            type=Path,
            default=None,
            help="CSV/JSONL manifest or a folder of label folders (with --zero-shot: labelled rows that fit its "
            "temperature, optional)",
        )
        p.add_argument(
            "--zero-shot",
            type=Path,
            default=None,
            metavar="PROMPTS",
            help="a model from label names alone: a CSV with columns label,prompt (transcript features; no manifest)",
        )
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--force", action="store_true", help=force_help)
    _feature_args(p)
    _fit_args(p, crossval)
    p.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    p.add_argument(
        "--context",
        choices=["auto", "on", "off"],
        default="auto",
        help="also train short clips with background around them, as regions of long recordings hold them "
        "(auto: when the clips fill less than 0.8 of a window; background rows give the background)",
    )
    p.add_argument("--seed", type=int, default=0)
    if crossval:
        p.set_defaults(test_size=None)  # the held-out folds are the test sets
    else:
        p.add_argument(
            "--test-size",
            type=POSITIVE,
            default=None,
            help="hold out this many groups (videos), or this fraction if < 1, as a grouped stratified test set",
        )
    p.add_argument(
        "--mode",
        choices=["probe", "finetune"],
        default="probe",
        help="probe on cached embeddings (fast, default) or full fine-tuning of an hf: encoder"
        + (" (crossval: probe only)" if crossval else ""),
    )
    ray_args(p)
    if not crossval:
        _finetune_args(p)
    precision_arg(p)
    window_args(p)
    fetch_args(p)
    common_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audioclf", description="Train, evaluate and apply audio classifiers.")
    parser.add_argument("--version", action="version", version=f"audioclf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="embed a labelled manifest, train a probe, save the model")
    _train_args(p, "model folder to write", "overwrite an existing model folder")

    p = sub.add_parser("crossval", help="train and evaluate once per grouped fold; pooled report with CIs")
    out_help, force_help = (
        "folder for the folds' manifests, models and reports",
        "redo every fold (default: keep finished ones)",
    )
    _train_args(p, out_help, force_help, crossval=True)
    g = p.add_argument_group("folds (outer cross-validation)")
    g.add_argument(
        "--folds",
        dest="cv_folds",
        type=int_at_least(2),
        default=5,
        metavar="K",
        help="grouped, label-stratified folds, each held out once (default %(default)s; fewer with fewer groups)",
    )
    g.add_argument(
        "--fold-column",
        default=None,
        metavar="COLUMN",
        help="one fold per value of this manifest column instead, e.g. fold (official folds) or group",
    )

    _evaluate_predict_parsers(sub)
    _embed_fetch_parsers(sub)
    _serve_parser(sub)
    _export_parser(sub)
    add_corpus_parsers(sub)
    return parser


def _evaluate_predict_parsers(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model on a labelled manifest: report.json, report.md, confusion.png")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument(
        "--split", default="auto", help="rows to use: auto (test rows if any, else all) | all | train | val | test"
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default <model>/evaluation)")
    p.add_argument(
        "--include-training",
        action="store_true",
        help="also score rows the model was trained on (same group, file or audio); not a held-out estimate",
    )
    p.add_argument(
        "--min-confidence",
        default=None,
        metavar="P|auto",
        help="coverage and accuracy at this threshold (default auto)",
    )
    _segment_args(p)  # segment-level scores where the manifest gives start/end per label
    fetch_args(p)
    common_args(p)

    p = sub.add_parser("predict", help="label audio files, folders and URLs")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("inputs", nargs="+", help="audio files, folders or http(s) URLs")
    p.add_argument("--top-k", type=POSITIVE_INT, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--timeline", action="store_true", help="per-window labels for long recordings")
    p.add_argument(
        "--min-confidence",
        default=None,
        metavar="P|auto",
        help="answer 'unknown' below this probability (auto: the threshold chosen at training)",
    )
    g = _segment_args(p)
    g.add_argument("--segments", action="store_true", help="labelled time segments (implied by --format/--out)")
    g.add_argument("--format", default=None, help=f"segment file format: {', '.join(FORMATS)} (default csv)")
    g.add_argument("--out", type=Path, default=None, help="folder for one segment file per input and segments.csv")
    g.add_argument("--plot", action="store_true", help="also write a timeline PNG per input into --out")
    fetch_args(p)
    common_args(p)


def _segment_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Windows at predict time and how segments are made of them."""
    p.add_argument("--window", type=POSITIVE, default=None, help="window length in seconds (default: the model's)")
    p.add_argument(
        "--hop", type=POSITIVE, default=None, help="hop in seconds (default: the model's; half a window for segments)"
    )
    g = p.add_argument_group("segments: where in each recording each label occurs")
    g.add_argument("--smooth", default=DEFAULT_SMOOTH, help="median:N, mean:N (windows) or none (default %(default)s)")
    g.add_argument("--min-duration", type=NON_NEGATIVE, default=0.0, help="drop segments shorter than this (seconds)")
    g.add_argument(
        "--segmenter",
        default="auto",
        help="events (find where something happens, classify each region as a clip), windows (label every frame "
        "from its windows) or auto: the model's choice, events when it was trained on short clips (default auto)",
    )
    return g


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="an HTTP API and a web page for a trained model")
    p.add_argument("--model", type=Path, default=None, help="a trained model folder (give it, --index, or both)")
    p.add_argument("--index", type=Path, default=None, help="also search this corpus index (POST /v1/search)")
    p.add_argument("--labels", type=Path, default=None, help="with --index: a labels file for the review tab")
    p.add_argument("--annotator", default="", help="the reviewer name answers are logged under by default")
    server_args(p)
    p.add_argument("--max-upload", default="200M", help="largest request body (default %(default)s)")
    p.add_argument(
        "--max-queue", type=POSITIVE_INT, default=64, help="requests waiting before 503 (default %(default)s)"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default %(default)s)")
    p.add_argument("--cors-origin", default=None, help="allow browser calls from this origin (default: none)")
    p.add_argument("--allow-private-urls", action="store_true", help="let URL inputs reach private addresses")
    p.add_argument("--max-filesize", default=None, help="skip URL downloads larger than this, e.g. 200M")
    common_args(p)


def _export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="a trained model as an ONNX graph that onnxruntime runs without torch")
    p.add_argument("--model", type=Path, required=True, help="the model folder to export")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the format (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="the exported model folder to write")
    p.add_argument(
        "--quantize",
        choices=["none", "int8"],
        default="none",
        help="int8: dynamically quantised weights, smaller and not exact; kept only when they give the fp32 "
        "answers on the --check recordings (default %(default)s)",
    )
    p.add_argument(
        "--check",
        type=Path,
        nargs="+",
        default=[],
        metavar="AUDIO",
        help="with --quantize int8: recordings (files or folders) on which int8 must agree with fp32 (>= 0.99)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing model folder")
    common_args(p)


def _embed_fetch_parsers(sub: Any) -> None:
    p = sub.add_parser("embed", help="fill the embedding cache for a manifest (no training)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--failures", type=Path, default=None, help="write skipped items to this CSV")
    p.add_argument(
        "--encoder",
        default=None,
        help="builtin | hf:<hub id or local dir> | whisper:<size or dir> (default: wav2vec2-base-960h)",
    )
    ray_args(p)
    precision_arg(p)
    window_args(p)
    fetch_args(p)
    common_args(p)
    p = sub.add_parser("fetch", help="download the URL rows of a manifest into the cache (no embedding)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--max-duration", type=POSITIVE, default=None, help="download at most this many seconds of each")
    p.add_argument("--failures", type=Path, default=None, help="write failed URLs to this CSV")
    ray_args(p)
    fetch_args(p)
    common_args(p)
