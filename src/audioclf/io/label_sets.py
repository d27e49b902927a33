"""Several labels in one manifest cell: ``speech;music`` (``\\;`` for a semicolon inside a label), or a JSON list
under ``labels`` in JSONL. A row's labels are kept as one canonical string: sorted, de-duplicated, escaped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from audioclf.errors import ManifestError

SEPARATOR = ";"
_SPLIT = re.compile(r"(?<!\\);")


def split_labels(text: str, where: str = "") -> tuple[str, ...]:
    """The labels in a cell, unescaped; an empty entry (``a;;b``, a trailing ``;``) is an error."""
    parts = [part.strip().replace("\\;", SEPARATOR) for part in _SPLIT.split(text)]
    if len(parts) > 1 and not all(parts):
        prefix = f"{where}: " if where else ""
        raise ManifestError(
            f"{prefix}label list {text!r} has an empty entry; separate labels with single ';' (write \\; for a "
            "semicolon inside a label)"
        )
    return tuple(parts)


def join_labels(labels: Iterable[str]) -> str:
    """The canonical cell for a set of labels."""
    return SEPARATOR.join(label.replace(SEPARATOR, "\\;") for label in sorted(set(labels)))


def canonical(text: str, where: str = "") -> str:
    return join_labels(split_labels(text, where))


def from_json_list(value: Sequence[object], where: str) -> str:
    labels = [str(v).strip() for v in value]
    if not labels or not all(labels):
        raise ManifestError(f"{where}: 'labels' must be a non-empty list of non-empty strings, got {value!r}")
    return join_labels(labels)


def is_multi_label(cells: Iterable[str | None]) -> bool:
    """Any row with more than one label makes the task multi-label."""
    return any(cell is not None and len(split_labels(cell)) > 1 for cell in cells)


def multi_hot(cells: Sequence[str | None], labels: Sequence[str]) -> np.ndarray:
    """[n_rows, n_labels] 0/1: each row's label set (its label cell, split into labels)."""
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((len(cells), len(labels)), dtype=np.float32)
    for row, cell in enumerate(cells):
        for label in split_labels(cell or ""):
            if label in index:
                y[row, index[label]] = 1.0
    return y
