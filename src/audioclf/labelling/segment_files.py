"""Segments as files people open elsewhere: a CSV or JSON-lines table for a batch, an Audacity label track, a
Raven selection table, WebVTT captions, a chapters list as YouTube descriptions take it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from audioclf.errors import AudioclfError
from audioclf.evaluation.segments import Segment
from audioclf.fileio import write_text_atomic
from audioclf.io.audio import SAMPLE_RATE_HZ

if TYPE_CHECKING:  # the command line reads FORMATS without importing the models
    from audioclf.labelling.prediction import Prediction

TABLE_COLUMNS = ("source", "start_s", "end_s", "label", "confidence", "max_probability")
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Label",
    "Confidence",
)


def _table_rows(preds: Sequence[Prediction]) -> list[list[object]]:
    return [
        [
            p.source,
            f"{s.start_s:.3f}",
            f"{s.end_s:.3f}",
            s.label,
            f"{s.mean_probability:.4f}",
            f"{s.max_probability:.4f}",
        ]
        for p in preds
        for s in p.segments
    ]


def csv_table(preds: Sequence[Prediction]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    writer.writerows(_table_rows(preds))
    return buf.getvalue()


def jsonl_table(preds: Sequence[Prediction]) -> str:
    lines = [json.dumps({"source": p.source, **s.as_dict()}, ensure_ascii=False) for p in preds for s in p.segments]
    return "".join(line + "\n" for line in lines)


def audacity_labels(segments: Sequence[Segment]) -> str:
    """Tab-separated start, end, label: Audacity's File > Import > Labels."""
    return "".join(f"{s.start_s:.6f}\t{s.end_s:.6f}\t{_one_line(s.label)}\n" for s in segments)


def raven_table(segments: Sequence[Segment]) -> str:
    """A Raven Pro selection table: one selection per segment over the whole band."""
    rows = ["\t".join(RAVEN_COLUMNS)]
    top_hz = SAMPLE_RATE_HZ / 2
    for i, s in enumerate(segments, start=1):
        fields = [i, "Spectrogram 1", 1, f"{s.start_s:.6f}", f"{s.end_s:.6f}", "0.0", f"{top_hz:.1f}"]
        rows.append("\t".join(map(str, [*fields, _one_line(s.label), f"{s.mean_probability:.4f}"])))
    return "\n".join(rows) + "\n"


def webvtt(segments: Sequence[Segment]) -> str:
    cues = [
        f"{i}\n{_clock(s.start_s, 3)} --> {_clock(s.end_s, 3)}\n{_one_line(s.label)} ({s.mean_probability:.2f})\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def chapters(segments: Sequence[Segment]) -> str:
    """``00:00 travel`` lines; the first chapter starts at 00:00, as YouTube requires."""
    lines = [
        f"{_clock(0.0 if i == 0 else s.start_s, 0, short=True)} {_one_line(s.label)}" for i, s in enumerate(segments)
    ]
    return "".join(line + "\n" for line in lines)


PER_INPUT: dict[str, tuple[str, Callable[[Sequence[Segment]], str]]] = {
    "audacity": (".txt", audacity_labels),
    "raven": (".selections.txt", raven_table),
    "vtt": (".vtt", webvtt),
    "chapters": (".chapters.txt", chapters),
}
TABLES: dict[str, tuple[str, Callable[[Sequence[Prediction]], str]]] = {
    "csv": (".csv", csv_table),
    "jsonl": (".jsonl", jsonl_table),
}
FORMATS = (*TABLES, *PER_INPUT)


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise AudioclfError(f"segment format {name!r}: use one of {', '.join(FORMATS)}", option="format")
    return name


def render(preds: Sequence[Prediction], fmt: str) -> str:
    """The whole batch in one text: a table, or (for per-input formats) one input's file."""
    check_format(fmt)
    if fmt in TABLES:
        return TABLES[fmt][1](preds)
    if len(preds) != 1:
        raise AudioclfError(f"the {fmt} format holds one input's segments; give an output folder", option="out")
    return PER_INPUT[fmt][1](preds[0].segments)


def write_segment_files(preds: Sequence[Prediction], fmt: str, out: Path) -> list[Path]:
    """One file per input in ``fmt`` plus the combined table (``segments.csv``, or ``.jsonl``) in ``out``."""
    check_format(fmt)
    out.mkdir(parents=True, exist_ok=True)
    table = "jsonl" if fmt == "jsonl" else "csv"
    ext, make_table = TABLES[table]
    written = [out / f"segments{ext}"]
    write_text_atomic(written[0], make_table(preds))
    for p in preds:
        if fmt in PER_INPUT:
            ext, text = PER_INPUT[fmt][0], PER_INPUT[fmt][1](p.segments)
        else:
            ext, text = TABLES[fmt][0], TABLES[fmt][1]([p])
        written.append(out / f"{output_stem(p.source)}{ext}")
        write_text_atomic(written[-1], text)
    return written


def output_stem(source: str) -> str:
    """A file name for an input's outputs: its own name made safe, plus a hash of the whole source (so two
    inputs called ``clip.wav`` in different folders, or URLs, never collide)."""
    parts = urlsplit(source)
    name = PurePosixPath(parts.path).stem if parts.scheme in ("http", "https") else Path(source).stem
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "input"
    return f"{safe}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def _clock(seconds: float, decimals: int, *, short: bool = False) -> str:
    """``hh:mm:ss.mmm`` (``decimals`` digits after the second); ``short`` drops zero hours (``mm:ss``)."""
    scale = 10**decimals
    whole, frac = divmod(round(seconds * scale) if decimals else int(seconds), scale)
    h, m, sec = whole // 3600, whole // 60 % 60, whole % 60
    tail = f".{frac:0{decimals}d}" if decimals else ""
    return f"{m:02d}:{sec:02d}{tail}" if short and h == 0 else f"{h:02d}:{m:02d}:{sec:02d}{tail}"


def _one_line(label: str) -> str:
    return " ".join(label.split())
