"""Classes described in words: a ``label,prompt`` CSV (one or more prompts per label) for a zero-shot model.

    label,prompt
    food,cooking and eating
    food,a recipe with its ingredients
    travel,a journey to another country

A prompt may hold ``{}``, replaced by the label (``a recording of {} sounds``); an empty prompt is the label in
the model's own template (the label itself for transcripts, ``This is a sound of {}.`` for CLAP). Labels keep
the order of their first row."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from audioclf.errors import ManifestError
from audioclf.io.manifest import read_text


@dataclass(frozen=True)
class LabelPrompts:
    """Each label and the words that describe it."""

    labels: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]  # per label, in the file's order ("": the label in the template)

    def resolved(self, template: str) -> tuple[tuple[str, ...], ...]:
        """Each label's prompts as text: ``{}`` is the label; an empty prompt is ``template`` with the label."""
        return tuple(
            tuple(dict.fromkeys((p or template).replace("{}", label) for p in said))
            for label, said in zip(self.labels, self.prompts, strict=True)
        )


def read_prompts(path: Path) -> LabelPrompts:
    """The prompts of ``path``; a missing file, a missing column or fewer than two labels is one line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: prompts file not found; give a CSV with columns label,prompt")
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    if "label" not in header or "prompt" not in header:
        raise ManifestError(f"{path}: header {header} needs the columns label,prompt (e.g. food,cooking and eating)")
    found: dict[str, list[str]] = {}
    try:
        for row in reader:
            cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
            label, prompt = cells.get("label", ""), cells.get("prompt", "")
            if not label:
                raise ManifestError(f"{path}:{reader.line_num}: empty label; every prompt describes a label")
            found.setdefault(label, []).append(prompt)
    except csv.Error as exc:
        raise ManifestError(f"{path}:{reader.line_num}: malformed CSV ({exc}); check the quotes on that line") from None
    if len(found) < 2:
        raise ManifestError(f"{path}: prompts for {len(found)} label(s); a classifier needs at least two")
    return LabelPrompts(tuple(found), tuple(tuple(p) for p in found.values()))
