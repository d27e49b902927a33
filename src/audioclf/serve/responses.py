"""What every route answers with: ``{"error": …}`` with a status, and JSON bodies read within a limit."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse

from audioclf.errors import AudioclfError
from audioclf.serve.uploads import TooLarge


@dataclass(frozen=True)
class JsonHints:
    """What each refusal of a JSON body tells the client to send instead."""

    too_large: str
    nested: str
    invalid: str


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_json(request: Request, limit: int, hints: JsonHints) -> object:
    """The JSON body, read up to ``limit`` bytes (also without a Content-Length)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise TooLarge(f"JSON body over {limit >> 10} KB; {hints.too_large}")
    try:
        return json.loads(bytes(data))
    except RecursionError:
        raise AudioclfError(f"JSON body nested too deeply; {hints.nested}") from None
    except ValueError:
        raise AudioclfError(hints.invalid) from None


def json_object(body: object, accepted: tuple[str, ...], hints: JsonHints) -> dict[str, object]:
    """``body`` as a JSON object with only ``accepted`` keys, or the one-line reason it is not."""
    if not isinstance(body, dict):
        raise AudioclfError(hints.invalid)
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        raise AudioclfError(f"unknown field(s) {unknown}; accepted: {', '.join(accepted)}")
    return body
