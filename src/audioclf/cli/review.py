"""`audioclf review IDX --labels labels.csv`: the page's Review tab over an index, served as `serve --index`
serves it (the same server, options and safe defaults), with the labels file it writes."""

from __future__ import annotations

import argparse

from audioclf.cli.serve import run_server


def cmd_review(args: argparse.Namespace) -> int:
    return run_server(args, args.model, args.index, args.labels, args.annotator or "")
