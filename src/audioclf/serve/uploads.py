"""Multipart uploads streamed straight into the request's private folder.

Starlette's ``request.form()`` first spools every upload into the system temp directory (readable by whoever
shares it, and left there if the process dies); here python-multipart's streaming parser writes each ``files``
part directly as ``upload-<n><known ext>`` under the per-request 0700 folder, counting bytes as they arrive,
so a body over the limit is refused while it streams (also when it has no Content-Length). Other form fields
are read and dropped, or for ``/v1/search`` kept as short text (``start``, ``top_k``, …: at most ``MAX_FIELDS``
of ``MAX_FIELD_BYTES`` each); the client's file name is kept only as the name its answer is reported under.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from audioclf.errors import AudioclfError
from audioclf.io.manifest import AUDIO_EXTENSIONS

FILES_FIELD = "files"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 256


class TooLarge(AudioclfError):
    """An upload over the limit."""


@dataclass
class Upload:
    """One received file: where it was written and the name the client gave it."""

    path: Path
    client_name: str
    size: int = 0


@dataclass
class _Receiver:
    """The parser's callbacks: each ``files`` part opens a file in ``folder``; its data is appended there."""

    folder: Path
    max_files: int
    file_field: str = FILES_FIELD
    keep_fields: bool = False  # other fields: kept as short text (receive_form), or dropped (receive_uploads)
    uploads: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # the other form fields, as text
    _field: tuple[str, bytearray] | None = None  # the text field being read
    _header: list[bytes] = field(default_factory=lambda: [b"", b""])
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _out: IO[bytes] | None = None
    ended: bool = False  # the closing boundary arrived: the body is whole

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._add(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add(1, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._open,
            "on_part_data": self._write,
            "on_part_end": self.close,
            "on_end": self._end,
        }

    def _end(self) -> None:
        self.ended = True

    def _add(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        self._headers[self._header[0].strip().lower()] = self._header[1].strip()
        self._header = [b"", b""]

    def _open(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition"))
        name, filename = params.get(b"name"), params.get(b"filename")
        if name != self.file_field.encode() or filename is None:
            self._text_field(name, filename)
            return
        if len(self.uploads) >= self.max_files:
            raise AudioclfError(f"more than {self.max_files} files in one request; send them in several")
        client_name = Path(filename.decode("utf-8", "replace")).name or f"upload-{len(self.uploads)}"
        suffix = Path(client_name).suffix.lower()
        path = self.folder / f"upload-{len(self.uploads)}{suffix if suffix in AUDIO_EXTENSIONS else ''}"
        self.uploads.append(Upload(path, client_name))
        self._out = open(path, "wb")  # noqa: SIM115 - closed at the part's end, or when the body stops

    def _text_field(self, name: bytes | None, filename: bytes | None) -> None:
        """A form field that is not the upload: kept as text when asked (and not a file), else dropped."""
        if name is None or filename is not None or not self.keep_fields:
            return
        if len(self.fields) >= MAX_FIELDS:
            raise AudioclfError(f"more than {MAX_FIELDS} form fields; send the file and the search options only")
        self._field = (name.decode("utf-8", "replace"), bytearray())

    def _write(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])
            self.uploads[-1].size += end - start
        elif self._field is not None:
            self._field[1].extend(data[start:end])
            if len(self._field[1]) > MAX_FIELD_BYTES:
                raise AudioclfError(f"form field {self._field[0]!r} over {MAX_FIELD_BYTES} bytes; send a short value")

    def close(self) -> None:
        """Close the file being written (a part ended, or the body stopped), or keep the text field read."""
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._field is not None:
            name, value = self._field
            self.fields[name[:64]] = value.decode("utf-8", "replace")
            self._field = None


async def receive_uploads(
    content_type: str, chunks: AsyncIterator[bytes], folder: Path, limit: int, max_files: int
) -> list[Upload]:
    """Every ``files`` part of a multipart body, written into ``folder``; refused past ``limit`` bytes in all."""
    uploads, _ = await receive_form(content_type, chunks, folder, limit, max_files, keep_fields=False)
    return uploads


async def receive_form(
    content_type: str,
    chunks: AsyncIterator[bytes],
    folder: Path,
    limit: int,
    max_files: int,
    file_field: str = FILES_FIELD,
    *,
    keep_fields: bool = True,
) -> tuple[list[Upload], dict[str, str]]:
    """The ``file_field`` parts of a multipart body, written into ``folder``, and its other (short) fields as
    text; refused past ``limit`` bytes in all."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise AudioclfError("multipart body without a boundary; let the HTTP client build the form")
    receiver = _Receiver(folder, max_files, file_field, keep_fields)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"request larger than the {limit >> 20} MB upload limit")
            await run_in_threadpool(parser.write, chunk)  # file writes off the event loop
        parser.finalize()
    except MultipartParseError as exc:
        raise AudioclfError(f"malformed multipart body ({exc}); let the HTTP client build the form") from None
    finally:
        receiver.close()
    if not receiver.ended:  # a client that stopped mid-body would otherwise have half a file labelled
        raise AudioclfError(
            "the multipart body ended before its closing boundary (a cut-off upload); send the whole request"
        )
    if not receiver.uploads:
        raise AudioclfError(f"no files: send the audio as multipart form field '{file_field}'")
    empty = next((u for u in receiver.uploads if u.size == 0), None)
    if empty is not None:
        raise AudioclfError(f"{empty.client_name}: the file is empty; send an audio file")
    return receiver.uploads, receiver.fields
