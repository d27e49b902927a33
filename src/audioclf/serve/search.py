"""``/v1/index``, ``POST /v1/search`` (by words: JSON; by an example clip: a multipart upload) and
``GET /v1/search/audio/{id}`` (the audio of one hit), when ``serve`` runs with an index.

The work runs on the lanes' threads, bounded like the model's queue and timed like every request; an uploaded
clip lives in the request's private folder, and the server's paths never show in an error."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from audioclf.corpus.search import SearchOptions
from audioclf.errors import AudioclfError
from audioclf.fileio import JSONObject
from audioclf.serve.corpus_index import AUDIO_ROUTE, CorpusIndex, NoSuchWindow, ServedHit
from audioclf.serve.options import ServeOptions
from audioclf.serve.query import read_flag, read_number, read_whole
from audioclf.serve.responses import JsonHints, json_object, read_json
from audioclf.serve.uploads import receive_form

T = TypeVar("T")
MAX_TOP_K = 1000
MAX_TEXT_CHARS = 1000
JSON_LIMIT_BYTES = 64 << 10
CLIP_FIELD = "file"
JSON_KEYS = ("text", "top_k", "per_recording", "exclude_source")
FORM_KEYS = ("start", "end", "top_k", "per_recording", "exclude_source")
JSON_HINTS = JsonHints(
    too_large="send words to search for, not a document",
    nested='send {"text": "words", "top_k": 10}',
    invalid=f'send JSON {{"text": "words"}}, or an example clip as multipart form field "{CLIP_FIELD}"',
)

SEARCH_OPENAPI = {  # the request /v1/search reads by hand, described for /docs
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                        "per_recording": {"type": "boolean"},
                        "exclude_source": {"type": "boolean"},
                    },
                    "required": ["text"],
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        CLIP_FIELD: {"type": "string", "format": "binary"},
                        "start": {"type": "number"},
                        "end": {"type": "number"},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                        "per_recording": {"type": "boolean"},
                    },
                    "required": [CLIP_FIELD],
                }
            },
        },
    },
}


def add_search_routes(app: FastAPI, corpus: CorpusIndex, options: ServeOptions) -> None:
    @app.get("/v1/index", response_model=dict[str, object])
    async def index_info() -> JSONObject:
        return await run_in_threadpool(corpus.summary)

    @app.post("/v1/search", openapi_extra=SEARCH_OPENAPI)
    async def search(request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            text, chosen = words_request(await read_json(request, JSON_LIMIT_BYTES, JSON_HINTS))
            hits = await answer_in_time(
                request.app.state.search_lane.submit(corpus.search_words, text, chosen), options
            )
            return _hits(hits)
        with tempfile.TemporaryDirectory(prefix="audioclf-upload-") as tmp:  # private (0700), removed after
            uploads, fields = await receive_form(
                kind, request.stream(), Path(tmp), options.max_upload_bytes, 1, CLIP_FIELD
            )
            start, end, chosen = clip_request(fields)
            clip = uploads[0]
            job = request.app.state.search_lane.submit(corpus.search_clip, clip.path, start, end, chosen)
            try:
                hits = await answer_in_time(job, options)
            except AudioclfError as exc:  # the upload named as the client named it, never by our temp path
                raise _renamed(exc, (str(clip.path.resolve()), str(clip.path)), clip.client_name) from None
        return _hits(hits)

    @app.get(AUDIO_ROUTE + "/{window_id}")
    async def hit_audio(request: Request, window_id: str) -> Response:
        if not re.fullmatch(r"\d{1,18}", window_id, re.ASCII):
            raise NoSuchWindow(f"window {window_id[:40]!r}: not in this index; use the ids /v1/search answers with")
        wav = await answer_in_time(request.app.state.audio_lane.submit(corpus.clip, int(window_id)), options)
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})


def words_request(body: object) -> tuple[str, SearchOptions]:
    """``{"text": …, "top_k": …, "per_recording": …, "exclude_source": …}``, checked."""
    body = json_object(body, tuple(JSON_KEYS), JSON_HINTS)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise AudioclfError('text: give the words to search for, e.g. {"text": "a train arriving"}')
    if len(text) > MAX_TEXT_CHARS:
        raise AudioclfError(f"text: {len(text)} characters; search with at most {MAX_TEXT_CHARS}")
    top_k = body.get("top_k", 10)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise AudioclfError(f"top_k={top_k!r}: use a whole number from 1 to {MAX_TOP_K}")
    flags = {}
    for key in ("per_recording", "exclude_source"):
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise AudioclfError(f"{key}={value!r}: use true or false")
        flags[key] = value
    return text.strip(), _options(top_k, flags["per_recording"], flags["exclude_source"])


def clip_request(fields: Mapping[str, str]) -> tuple[float | None, float | None, SearchOptions]:
    """The form fields beside an uploaded example: ``start``/``end`` (seconds), ``top_k``, the flags."""
    unknown = sorted(set(fields) - set(FORM_KEYS))
    if unknown:
        raise AudioclfError(f"unknown form field(s) {unknown}; accepted: {CLIP_FIELD}, {', '.join(FORM_KEYS)}")
    given = {k: v.strip() for k, v in fields.items() if v.strip()}  # an empty field is one not given
    start = read_number(given, "start", 0.0) if "start" in given else None
    end = read_number(given, "end", 0.0) if "end" in given else None
    if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
        raise AudioclfError("start/end: give seconds into the clip, start at least 0 and end after start")
    chosen = _options(
        read_whole(given, "top_k", 10), read_flag(given, "per_recording"), read_flag(given, "exclude_source")
    )
    return start, end, chosen


def _options(top_k: int, per_recording: bool, exclude_source: bool) -> SearchOptions:
    if not 1 <= top_k <= MAX_TOP_K:
        raise AudioclfError(f"top_k={top_k}: ask for 1 to {MAX_TOP_K} hits")
    return SearchOptions(top_k=top_k, per_recording=per_recording, exclude_source=exclude_source)


async def answer_in_time(future: Future[T], options: ServeOptions) -> T:
    """The lane's answer, or a 504 error once the request's time is up (a job not yet started never runs)."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), options.timeout_s)
    except TimeoutError:
        raise TooSlow(f"no answer within {options.timeout_s:g} s; search with a shorter clip, or retry") from None


class TooSlow(AudioclfError):
    """A search or a hit's audio that took longer than the request's time limit."""


def _renamed(exc: AudioclfError, paths: tuple[str, ...], name: str) -> AudioclfError:
    message = str(exc)
    for path in paths:
        message = message.replace(path, name)
    return type(exc)(message)


def _hits(hits: list[ServedHit]) -> JSONResponse:
    return JSONResponse({"hits": [h.to_dict() for h in hits]})
