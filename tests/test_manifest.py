from __future__ import annotations

import json
from pathlib import Path

import pytest

from audioclf.errors import ManifestError
from audioclf.io.manifest import audio_files, labels_of, load_manifest


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    for name in ("a.wav", "b.wav", "c.flac"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_resolves_relative_paths_and_reads_optional_columns(files: Path) -> None:
    m = write(files / "m.csv", "path,label,split,group\na.wav,dog,train,g1\nb.wav,cat,TEST,\n")
    items = load_manifest(m)
    assert [Path(i.source).name for i in items] == ["a.wav", "b.wav"]
    assert Path(items[0].source).is_absolute()
    assert items[0].split == "train" and items[0].group == "g1"
    assert items[1].split == "test" and items[1].group == items[1].source  # default group: the file itself
    assert labels_of(items) == ["cat", "dog"]
    assert items[1].where.endswith("m.csv:3")


def test_csv_with_bom_crlf_and_extra_columns(files: Path) -> None:
    m = write(files / "m.csv", "\ufeffPath,Label,note\r\na.wav,dog,x\r\n\r\nb.wav,cat,y\r\n")
    assert [i.label for i in load_manifest(m)] == ["dog", "cat"]


def test_jsonl(files: Path) -> None:
    lines = [{"path": "a.wav", "label": "dog", "group": 7}, {"path": str(files / "b.wav"), "label": "cat"}]
    m = write(files / "m.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    items = load_manifest(m)
    assert [i.label for i in items] == ["dog", "cat"] and items[0].group == "7"


def test_folder_per_label_skips_hidden_and_non_audio(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label / "sub").mkdir(parents=True)
        (tmp_path / label / "1.wav").write_bytes(b"x")
        (tmp_path / label / "sub" / "2.mp3").write_bytes(b"x")
        (tmp_path / label / ".hidden.wav").write_bytes(b"x")
        (tmp_path / label / "notes.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    items = load_manifest(tmp_path)
    assert sorted((i.label, Path(i.source).name) for i in items) == [
        ("cat", "1.wav"),
        ("cat", "2.mp3"),
        ("dog", "1.wav"),
        ("dog", "2.mp3"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\na.wav,dog\n", "must name a 'path'"),
        ("path,label\na.wav,\n", "m.csv:2: empty label"),
        ("path\na.wav\n", "header has no 'label' column"),
        ("path,label\na.wav,dog\n./a.wav,cat\n", "is also"),
        ("path,label,split\na.wav,dog,holdout\n", "m.csv:2: unknown split 'holdout'"),
        ("path,label\n", "no rows"),
        ("path,label\n,dog\n", "m.csv:2: empty 'path'"),
    ],
)
def test_bad_manifests_name_the_row(files: Path, text: str, message: str) -> None:
    m = write(files / "m.csv", text)
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_jsonl_line(files: Path) -> None:
    m = write(files / "m.jsonl", '{"path": "a.wav", "label": "x"}\n{not json}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not valid JSON"):
        load_manifest(m)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv")


def test_labels_optional_for_embedding(files: Path) -> None:
    m = write(files / "m.csv", "path\na.wav\n")
    assert load_manifest(m, require_labels=False)[0].label is None


def test_audio_files_expands_folders(files: Path) -> None:
    (files / ".h.wav").write_bytes(b"x")
    (files / "readme.txt").write_text("x")
    found = audio_files([files, files / "a.wav"])
    assert [p.name for p in found] == ["a.wav", "b.wav", "c.flac", "a.wav"]
    with pytest.raises(ManifestError, match="no such file"):
        audio_files([files / "zzz.wav"])
