"""Labelled rows from a CSV / JSONL manifest or a folder with one sub-folder per label, validated per row."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from audioclf.errors import ManifestError, TrainingError
from audioclf.io.label_sets import canonical, from_json_list, split_labels

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".aac",
        ".mp4",
        ".webm",
        ".mkv",
        ".wma",
        ".aiff",
        ".aif",
        ".au",
        ".caf",
        ".amr",
        ".mov",
    ]
)
_SOURCE_KEYS = ("path", "url")


@dataclass(frozen=True)
class Item:
    """One labelled audio source.

    ``source`` is an absolute local path; ``group`` keeps related items (windows of one recording, takes of
    one speaker) on the same side of every split; ``where`` names the row for error messages.
    """

    source: str
    label: str | None
    split: str | None
    group: str
    where: str
    local: str | None = None  # for a URL: the downloaded file, once fetched
    start_s: float | None = None  # optional time range within the recording
    end_s: float | None = None
    offset_s: float = 0.0  # seconds of the recording before the first sample of ``file`` (a range downloaded)

    @property
    def is_url(self) -> bool:
        return is_http_url(self.source)

    @property
    def needs_fetch(self) -> bool:
        """A URL not yet downloaded (a fetched one carries its local file)."""
        return self.is_url and self.local is None

    @property
    def file(self) -> str:
        """The local file to decode."""
        return self.local or self.source


def load_manifest(path: Path, *, require_labels: bool = True) -> list[Item]:
    """Read a manifest: ``*.csv``, ``*.jsonl`` / ``*.ndjson``, or a folder of per-label sub-folders."""
    path = Path(path)
    if path.is_dir():
        items = list(_folder_items(path))
    elif not path.exists():
        raise ManifestError(f"{path}: manifest not found; pass a CSV, a JSONL file or a folder of label folders")
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        items = list(_rows_to_items(_jsonl_rows(path), path, require_labels))
    else:
        items = list(_rows_to_items(_csv_rows(path, require_labels), path, require_labels))
    if not items:
        raise ManifestError(f"{path}: manifest has no rows; add rows with columns path,label")
    return _dedupe(items)


def column_values(path: Path, column: str) -> dict[str, str]:
    """Each row's non-empty value in ``column`` of a CSV/JSONL manifest, keyed like ``Item.where`` (e.g. the
    official folds of a data set, for ``crossval --fold-column``)."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: a folder of label folders has no columns; give a CSV or JSONL manifest")
    key = column.strip().lower()
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    rows = _jsonl_rows(path) if jsonl else _csv_rows(path, require_labels=False)
    values = {f"{path}:{line_no}": row.get(key, "") for line_no, row in rows}
    if not any(values.values()):
        raise ManifestError(f"{path}: no {column!r} column, or it is empty on every row")
    return {where: value for where, value in values.items() if value}


def _csv_rows(path: Path, require_labels: bool) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        yield from _csv_dict_rows(reader, path, require_labels)
    except csv.Error as exc:  # e.g. a field over csv's limit: an unclosed quote swallowed the rest of the file
        raise ManifestError(
            f"{path}:{reader.line_num}: malformed CSV ({exc}); check for an unclosed quote on or before that line"
        ) from None


def read_text(path: Path) -> str:
    """A manifest's text: UTF-8 (a BOM is dropped) or UTF-16 with its BOM (as spreadsheets export "Unicode
    text"). Anything else, such as Latin-1, is refused naming the line, since guessing would corrupt paths."""
    data = path.read_bytes()
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        raise ManifestError(
            f"{path}:{line}: not {encoding.removesuffix('-sig').upper()} text (byte 0x{data[exc.start]:02x}); "
            "save the manifest as UTF-8"
        ) from None


def _csv_dict_rows(
    reader: csv.DictReader[str], path: Path, require_labels: bool
) -> Iterator[tuple[int, dict[str, str]]]:
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not any(key in header for key in _SOURCE_KEYS):
        raise ManifestError(
            f"{path}: header must name a 'path' (or 'url') column, found {header or 'no header'}; "
            "the first line should be e.g. path,label"
        )
    if require_labels and "label" not in header:
        raise ManifestError(f"{path}: header has no 'label' column, found {header}; e.g. path,label")
    reader.fieldnames = header
    for row in reader:
        clean = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
        if any(clean.values()):
            yield reader.line_num, clean


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):  # not splitlines(): U+2028 is text
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{line_no}: not valid JSON ({exc.msg}); one object per line") from None
        except RecursionError:
            raise ManifestError(f"{path}:{line_no}: JSON nested too deeply; one flat object per line") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{path}:{line_no}: expected a JSON object with keys path,label")
        row = {str(k).lower(): "" if v is None else str(v).strip() for k, v in obj.items()}
        labels = obj.get("labels")
        if labels is not None:  # a JSON list of labels: one canonical cell
            if not isinstance(labels, list):
                raise ManifestError(f'{path}:{line_no}: \'labels\' must be a JSON list such as ["speech", "music"]')
            row["label"] = from_json_list(labels, f"{path}:{line_no}")
        yield line_no, row


def _rows_to_items(rows: Iterable[tuple[int, dict[str, str]]], manifest: Path, require_labels: bool) -> Iterator[Item]:
    base = manifest.resolve().parent
    for line_no, row in rows:
        where = f"{manifest}:{line_no}"
        yield _row_to_item(row, base, where, require_labels)


def _row_to_item(row: dict[str, str], base: Path, where: str, require_labels: bool) -> Item:
    raw = row.get("path") or row.get("url") or ""
    if not raw:
        raise ManifestError(f"{where}: empty 'path' and 'url'; give the audio file's path or an http(s) URL")
    src = check_url(raw, where) if looks_like_url(raw) else _local_source(raw, base, where)
    label = canonical(row["label"], where) if row.get("label") else None
    if require_labels and label is None:
        raise ManifestError(f"{where}: empty label for {raw}; every row needs a label")
    split = (row.get("split") or "").lower() or None
    if split is not None and split not in SPLITS:
        raise ManifestError(f"{where}: unknown split {split!r}; use one of {', '.join(SPLITS)} or leave it empty")
    start, end = seconds_field(row, "start", where), seconds_field(row, "end", where)
    if start is not None and end is not None and end <= start:
        raise ManifestError(f"{where}: end ({end}) must be after start ({start})")
    # A URL's group is filled with its video id once known; a file is its own group.
    group = row.get("group") or ("" if is_http_url(src) else src)
    return Item(src, label, split, group, where, start_s=start, end_s=end)


def _local_source(raw: str, base: Path, where: str) -> str:
    """The absolute path. A missing or unreadable file is not an error here: like a corrupt one, it is
    reported and skipped when the run reaches it, so one bad row never stops a long run."""
    if "\x00" in raw:
        raise ManifestError(f"{where}: the path contains a NUL character; fix the row")
    source = Path(raw).expanduser()
    source = source if source.is_absolute() else base / source
    return str(source.resolve())


def seconds_field(row: dict[str, str], key: str, where: str) -> float | None:
    """An optional time column (``start``, ``end``): seconds >= 0, or None when empty."""
    text = row.get(key) or ""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{where}: {key} {text!r} is not a number of seconds") from None
    if not value >= 0:
        raise ManifestError(f"{where}: {key} must be >= 0 seconds, got {text}")
    return value


def looks_like_url(text: str) -> bool:
    """Meant as a URL (then checked by ``check_url``), not a path: a scheme, or a scheme that has no ``//``."""
    return "://" in text or text.strip().lower().startswith(("data:", "mailto:", "javascript:"))


def is_http_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def check_url(url: str, where: str = "") -> str:
    """Accept only absolute http(s) URLs with a host; anything else is refused with the reason."""
    prefix = f"{where}: " if where else ""
    parsed = urlsplit(url.strip())
    if parsed.scheme.lower() not in ("http", "https"):
        scheme = parsed.scheme or url.split(":", 1)[0]
        raise ManifestError(f"{prefix}{url}: only http and https URLs are fetched, not {scheme!r}")
    if not parsed.hostname:
        raise ManifestError(f"{prefix}{url}: malformed URL (no host)")
    return url.strip()


def _folder_items(root: Path) -> Iterator[Item]:
    label_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not label_dirs:
        raise ManifestError(f"{root}: folder has no label sub-folders; use one sub-folder per label")
    for label_dir in label_dirs:
        for file in audio_files_under(label_dir):
            src = str(file.resolve())
            yield Item(source=src, label=label_dir.name, split=None, group=src, where=str(file))


def _dedupe(items: list[Item]) -> list[Item]:
    """Drop repeated rows (same audio and time range, same label and split) with a warning; the same audio
    with a different label or split is a contradiction that would leak between splits, so it is an error."""
    seen: dict[tuple[str, float | None, float | None], Item] = {}
    kept: list[Item] = []
    for item in items:
        key = (item.source, item.start_s, item.end_s)
        first = seen.get(key)
        if first is None:
            seen[key] = item
            kept.append(item)
        elif (first.label, first.split) == (item.label, item.split):
            log.warning("%s: repeats %s (%s); the repeat is ignored", item.where, first.where, item.source)
        else:
            raise ManifestError(
                f"{item.where}: {item.source} is also {first.where}, with label/split {_label_split(first)} there vs "
                f"{_label_split(item)} here; keep one of the rows"
            )
    return kept


def _label_split(item: Item) -> str:
    return f"{item.label or '(none)'}/{item.split or '(none)'}"


def audio_files_under(folder: Path) -> list[Path]:
    """The audio files anywhere under ``folder`` (by extension), sorted, skipping hidden files and folders."""
    return [
        f
        for f in sorted(folder.rglob("*"))
        if f.is_file()
        and f.suffix.lower() in AUDIO_EXTENSIONS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    ]


def audio_files(inputs: Iterable[Path]) -> list[Path]:
    """Expand files and folders (recursively, skipping hidden entries) into a sorted list of audio files."""
    files: list[Path] = []
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            files.extend(audio_files_under(entry))
        elif entry.exists():
            files.append(entry)
        else:
            raise ManifestError(f"{entry}: no such file or folder")
    return files


def labels_of(items: Iterable[Item]) -> list[str]:
    """Sorted distinct labels (of every row's label set, for multi-label rows)."""
    return sorted({label for item in items if item.label is not None for label in split_labels(item.label)})


def usable_labels(decoded: Iterable[Item], labels: list[str], manifest: Path) -> list[str]:
    """The labels that still have audio once undecodable files are skipped; at least two."""
    present = {label for item in decoded if item.label is not None for label in split_labels(item.label)}
    lost = [label for label in labels if label not in present]
    if lost:
        log.warning("label(s) %s dropped: none of their files could be decoded (see failures.csv)", lost)
    kept = [label for label in labels if label in present]
    check_two_labels(kept, manifest, " with decodable audio")
    return kept


def check_two_labels(labels: list[str], manifest: Path, having: str = "") -> None:
    """A classifier needs at least two labels; ``having`` says what the ones counted have."""
    if len(labels) < 2:
        raise TrainingError(f"{manifest}: found {len(labels)} label(s) {labels}{having}; a classifier needs at least 2")
