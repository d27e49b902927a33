"""What a model was trained on, kept beside it so that ``evaluate`` never scores those rows by accident.

Only SHA-256 digests are stored (of each group name, each source and each recording's audio), so a model folder
that is shared does not give away the training data's paths, URLs or speaker names."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from audioclf.errors import DecodeError, ModelError, TrainingError
from audioclf.fileio import JSON, JSONObject, write_json_atomic
from audioclf.io.cache import content_key
from audioclf.io.manifest import Item, load_manifest

log = logging.getLogger(__name__)

TRAINING_SET_NAME = "training_set.json"
_FORMAT = 1


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _audio_key(item: Item) -> str | None:
    """The digest of the row's audio (and time range), or None while it is not on this machine or cannot be
    read as a file (a pipe or a device: embedding reports that row; deciding whether it was seen must not)."""
    try:
        return content_key(item)
    except (OSError, DecodeError):
        return None


@dataclass(frozen=True)
class TrainingSet:
    """Digests of the groups, sources and audio of every recording a model was fitted, selected or calibrated
    on. A row is *seen* when any of the three matches: the same group (speaker, video, source recording), the
    same file or URL, or the same audio under another name."""

    groups: frozenset[str]
    sources: frozenset[str]
    audio: frozenset[str]

    @classmethod
    def of(cls, items: Iterable[Item]) -> TrainingSet:
        rows = list(items)
        audio = {key for key in map(_audio_key, rows) if key is not None}
        return cls(
            groups=frozenset(_digest(i.group) for i in rows if i.group),
            sources=frozenset(_digest(i.source) for i in rows),
            audio=frozenset(_digest(key) for key in audio),
        )

    def seen(self, item: Item) -> bool:
        if (item.group and _digest(item.group) in self.groups) or _digest(item.source) in self.sources:
            return True
        key = _audio_key(item)
        return key is not None and _digest(key) in self.audio

    def to_dict(self) -> JSONObject:
        return {
            "format": _FORMAT,
            "hash": "sha256",
            "groups": [*sorted(self.groups)],
            "sources": [*sorted(self.sources)],
            "audio": [*sorted(self.audio)],
        }

    @classmethod
    def from_dict(cls, data: JSONObject) -> TrainingSet:
        if data.get("format") != _FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {_FORMAT}")
        return cls(*(frozenset(str(x) for x in _digests(data[key])) for key in ("groups", "sources", "audio")))

    def save(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / TRAINING_SET_NAME, self.to_dict())

    @classmethod
    def load(cls, folder: Path) -> TrainingSet | None:
        """The model folder's record, or None for a model saved before it was kept."""
        path = Path(folder) / TRAINING_SET_NAME
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: damaged record of the training rows ({exc}); retrain the model") from exc


def _digests(value: JSON) -> list[JSON]:
    if not isinstance(value, list):
        raise TypeError(f"a list of digests expected, not {type(value).__name__}")
    return value


def training_rows(manifest: Path) -> list[Item]:
    """The manifest's rows a model may learn from (every row but split=test). A test row whose group also has
    training rows would leak that group into the test set: refused, as cross-validation refuses it."""
    items = load_manifest(manifest)
    train = [item for item in items if item.split != "test"]
    train_groups = {item.group for item in train if item.group}
    leaked = [item for item in items if item.split == "test" and item.group in train_groups]
    if leaked:
        first = leaked[0]
        raise TrainingError(
            f"{first.where}: test row of group {first.group!r}, which also has training rows "
            f"({len(leaked)} such test row(s)); a group (speaker, video, source) must be all test or all training"
        )
    return train
