"""Fuzzing the two parsers of untrusted input, the manifest reader and the audio decoder: whatever the bytes,
the only exceptions are the tool's own one-line errors, and each input is handled in bounded time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FORMATS, tone, write_audio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audioclf.errors import AudioclfError, DecodeError
from audioclf.io.audio import iter_windows
from audioclf.io.manifest import load_manifest

FUZZ = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])

_TOKENS = [
    "path",
    "label",
    "url",
    "split",
    "group",
    "start",
    "end",
    "train",
    "val",
    "test",
    "a.wav",
    "./x.flac",
    "http://",
    "https://h/x.mp3",
    "ftp://h/x",
    "data:,",
    "-1",
    "1e309",
    "nan",
    "0.5",
    "\ufeff",
    '"',
    ",",
    "\n",
    "\r\n",
    "\r",
    " ",
    "{",
    "}",
    ":",
    "null",
    "[",
    "]",
    "é",
    "\x00",
    "~",
    "..",
]
_manifest_text = st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=8)), max_size=40).map("".join)


@FUZZ
@given(text=_manifest_text, suffix=st.sampled_from([".csv", ".jsonl", ".tsv"]))
def test_manifest_parser_raises_only_its_own_errors(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"m{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            items = load_manifest(path, require_labels=False)
        except AudioclfError as exc:
            assert "\n" not in str(exc)
            return
        assert items and all(Path(i.source).is_absolute() or i.is_url for i in items)


def _samples(tmp: Path) -> dict[str, bytes]:
    rates = {ext: FORMATS[ext][1] for ext in ("wav", "flac", "mp3", "ogg")}
    return {
        ext: write_audio(tmp / f"s.{ext}", tone(440, 0.6, r, 0.1), r, channels=2).read_bytes()
        for ext, r in rates.items()
    }


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _samples(tmp_path_factory.mktemp("fuzz-samples"))


@FUZZ
@given(
    ext=st.sampled_from(["wav", "flac", "mp3", "ogg"]),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=30),
    junk=st.binary(max_size=64),
)
def test_decoder_on_damaged_files_raises_only_decode_errors(
    samples: dict[str, bytes], ext: str, cut: float, flips: list[tuple[float, int]], junk: bytes
) -> None:
    data = bytearray(samples[ext][: max(1, int(len(samples[ext]) * cut))])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x.{ext}"
        path.write_bytes(bytes(data) + junk)
        try:
            windows = list(iter_windows(path))
        except DecodeError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
        assert windows and all(w.samples.dtype == np.float32 and np.isfinite(w.samples).all() for w in windows)


@FUZZ
@given(
    head=st.sampled_from([b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS\x00\x02", b"ID3\x04", b"\xff\xfb"]),
    body=st.binary(max_size=2048),
)
def test_decoder_on_random_bytes_raises_only_decode_errors(head: bytes, body: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.wav"
        path.write_bytes(head + body)
        try:
            windows = list(iter_windows(path))
        except DecodeError:
            return
        assert all(np.isfinite(w.samples).all() for w in windows)
