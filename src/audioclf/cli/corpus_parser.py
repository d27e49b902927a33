"""The corpus commands' arguments: ``index`` (build or extend an index) and ``search`` (query it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audioclf.cli.arg_groups import common_args, fetch_args, precision_arg, ray_args, server_args, window_args
from audioclf.cli.arg_types import NON_NEGATIVE, POSITIVE_INT
from audioclf.corpus.similarity import Combine, Similarity

ENCODER_HELP = "builtin | hf:<hub id or local dir> | whisper:<size or dir> (default: wav2vec2-base-960h)"


def add_corpus_parsers(sub: Any) -> None:
    for add in (_index_parser, _search_parser, _suggest_parser, _review_parser):
        add(sub)


def _index_parser(sub: Any) -> None:
    p = sub.add_parser("index", help="embed every window of a corpus into a searchable index (adds new sources only)")
    p.add_argument("sources", nargs="*", help="audio files, folders (every audio file inside) or http(s) URLs")
    p.add_argument("--manifest", type=Path, default=None, help="a manifest (labels optional, kept when given)")
    p.add_argument("--out", type=Path, required=True, help="the index folder (created, or extended when it exists)")
    p.add_argument("--encoder", default=None, help=ENCODER_HELP)
    p.add_argument("--layer", default=None, help="last | middle | <index>: which layer's vectors (default: last)")
    p.add_argument(
        "--similarity",
        choices=[s.value for s in Similarity],
        default=None,
        help="how windows are compared (default: the best measured; see the README)",
    )
    p.add_argument("--failures", type=Path, default=None, help="also write this build's skipped items to this CSV")
    g = p.add_argument_group("transcripts: search by words")
    g.add_argument("--transcripts", action="store_true", help="store each window's transcript and its embedding")
    g.add_argument("--transcriber", default=None, help="whisper:<size or dir> | hf:<CTC model> (default: the encoder)")
    g.add_argument("--text-encoder", default="minilm", help="minilm | hf:<sentence encoder> (default %(default)s)")
    ray_args(p)
    precision_arg(p)
    window_args(p)
    fetch_args(p)
    common_args(p)


def _search_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="find the windows of an index most like an example, or saying some words")
    p.add_argument("index", type=Path, help="an index folder built by the index command")
    g = p.add_argument_group("what to look for (one of)")
    g.add_argument("--example", action="append", default=[], help="an audio file or URL (repeat for several)")
    g.add_argument("--text", default=None, help="words, searched in the windows' transcripts")
    g.add_argument("--queries", type=Path, default=None, help="a CSV of queries: column example (+start, end) or text")
    p.add_argument("--start", type=NON_NEGATIVE, default=None, help="use the example from this second")
    p.add_argument("--end", type=NON_NEGATIVE, default=None, help="use the example up to this second")
    p.add_argument("--negative", action="append", default=[], help="an audio file or URL to push hits away from")
    p.add_argument("--top-k", type=POSITIVE_INT, default=10, help="hits per query (default %(default)s)")
    p.add_argument("--per-recording", action="store_true", help="only the best window of each recording")
    p.add_argument("--exclude-source", action="store_true", help="never return the query's own recording")
    p.add_argument(
        "--combine",
        choices=[c.value for c in Combine],
        default=None,
        help="several examples: one mean direction, or the best of them (default: the best measured)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.add_argument("--out", type=Path, default=None, help="write the hits as a manifest (path,label,start,end,…)")
    fetch_args(p)
    common_args(p)


def _suggest_parser(sub: Any) -> None:
    p = sub.add_parser("suggest", help="the next windows of an index worth labelling (none already labelled)")
    p.add_argument("index", type=Path, help="an index folder built by the index command")
    p.add_argument("--labels", type=Path, required=True, help="the labels file (labels.csv; its log sits beside it)")
    p.add_argument("--n", type=POSITIVE_INT, default=10, help="how many (default %(default)s)")
    p.add_argument(
        "--strategy",
        default=None,
        help="margin | entropy | top:LABEL | diverse | random (default: the best measured; see the README)",
    )
    p.add_argument("--annotator", default="", help="who will label them (their windows are leased to them)")
    _labelling_args(p, "score with a trained model (a probe on the index's encoder and layer), not the quick model")
    p.add_argument("--seed", type=int, default=0, help="for random and diverse (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per suggestion")
    common_args(p)


def _review_parser(sub: Any) -> None:
    p = sub.add_parser("review", help="a web page to listen to and label an index's windows (keyboard first)")
    p.add_argument("index", type=Path, help="an index folder built by the index command")
    p.add_argument("--labels", type=Path, required=True, help="the labels file (created when missing)")
    p.add_argument("--annotator", default="", help="the name answers are logged under (default: none)")
    _labelling_args(p, "a trained model: its predictions on the index become a queue to check (it serves predict too)")
    server_args(p)
    common_args(p)


def _labelling_args(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--model", type=Path, default=None, help=model_help)
    p.add_argument(
        "--multi-label",
        action="store_true",
        help="a new labels file holds several labels per window (an existing one keeps the kind it was made as)",
    )
