"""`audioclf search`: the windows of an index most like some examples, or saying some words."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from audioclf.cli.options import emit, emit_json, fetch_options
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Example, Index, Query
from audioclf.corpus.search import Hit, SearchOptions
from audioclf.corpus.similarity import Combine
from audioclf.fileio import write_csv_atomic
from audioclf.io.manifest import read_text, seconds_field

MANIFEST_COLUMNS = ["path", "label", "start", "end", "group", "score", "query"]


def cmd_search(args: argparse.Namespace) -> int:
    index = Index.open(args.index, cache_dir=args.cache_dir)
    index.fetch = fetch_options(args, index.card.windows.max_duration_s)
    options = SearchOptions(
        top_k=args.top_k,
        per_recording=args.per_recording,
        exclude_source=args.exclude_source,
        combine=Combine(args.combine) if args.combine else Combine.MEAN,
    )
    hits = index.search_many(_queries(args), options)
    if args.out is not None:
        write_csv_atomic(args.out, MANIFEST_COLUMNS, [_manifest_row(h) for h in hits])
    for n, hit in enumerate(hits):
        if args.json:
            emit_json(hit.to_dict())
        else:
            emit(_line(n, hit))
    if args.out is not None:
        emit(f"wrote {args.out} ({len(hits)} rows)")
    return 0


def _queries(args: argparse.Namespace) -> list[Query]:
    given = sum([bool(args.example), args.text is not None, args.queries is not None])
    if given != 1:
        raise CorpusError("search for one of: examples (--example), words (--text) or a file of queries (--queries)")
    if (args.start is not None or args.end is not None) and len(args.example) != 1:
        raise CorpusError("--start/--end cut one example; with several, give each its own line in --queries")
    negatives = tuple(Example(n) for n in args.negative)
    if args.example:
        examples = tuple(Example(e, args.start, args.end) for e in args.example)
        return [Query(examples=examples, negatives=negatives)]
    if args.text is not None:
        return [Query(text=args.text)]
    return _query_file(args.queries, negatives)


def _query_file(path: Path, negatives: tuple[Example, ...]) -> list[Query]:
    rows = list(csv.DictReader(io.StringIO(read_text(path))))
    columns = set(rows[0]) if rows else set()
    if not rows or not ({"example", "text"} & columns):
        raise CorpusError(f"{path}: needs a header with a column example (a file or URL) or text, and a row")
    queries = []
    for line, row in enumerate(rows, start=2):
        text, example = (row.get("text") or "").strip(), (row.get("example") or "").strip()
        name = (row.get("name") or "").strip() or example or text
        if bool(text) == bool(example):
            raise CorpusError(f"{path}:{line}: give either an example or a text")
        if text:
            queries.append(Query(text=text, name=name))
            continue
        where = f"{path}:{line}"
        start, end = seconds_field(row, "start", where), seconds_field(row, "end", where)
        base = path.parent
        source = example if "://" in example or Path(example).is_absolute() else str(base / example)
        queries.append(Query(examples=(Example(source, start, end),), negatives=negatives, name=name))
    return queries


def _manifest_row(hit: Hit) -> dict[str, object]:
    return {
        "path": hit.source,
        "label": hit.label or "",
        "start": f"{hit.start_s:.3f}",
        "end": f"{hit.end_s:.3f}",
        "group": hit.group,
        "score": f"{hit.score:.6f}",
        "query": hit.query or "",
    }


def _line(n: int, hit: Hit) -> str:
    label = f" [{hit.label}]" if hit.label else ""
    said = f"  “{hit.transcript[:60]}”" if hit.transcript else ""
    query = f"{hit.query}: " if hit.query else ""
    return f"{query}{n + 1:>3} {hit.score:7.3f}  {hit.start_s:8.2f}-{hit.end_s:<8.2f} {hit.source}{label}{said}"
