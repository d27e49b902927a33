"""The HTTP service: the model loaded once, requests micro-batched off the event loop, JSON errors with status
codes, a token on every API route, and the web page from files inside the package."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from audioclf.errors import AudioclfError
from audioclf.fileio import JSONObject
from audioclf.io.cache import default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.labelling.inputs import predict_all
from audioclf.labelling.prediction import Prediction, PredictOptions
from audioclf.model.folder import TrainedModel
from audioclf.serve.batcher import MicroBatcher, QueueFull
from audioclf.serve.egress import EgressProxy
from audioclf.serve.guard import Unauthorized, checked_url, token_ok
from audioclf.serve.metrics import ServeMetrics
from audioclf.serve.options import ServeOptions
from audioclf.serve.query import PREDICT_OPENAPI, options_from_query
from audioclf.serve.uploads import TooLarge, receive_uploads
from audioclf.version import __version__

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
API_PREFIXES = ("/v1/", "/metrics")
RETRY_AFTER_S = 1
JSON_LIMIT_BYTES = 1 << 20  # {"urls": [...]}: at most max_batch_inputs URLs, each a few KB at most
GONE = 499  # the client went away (or stopped sending) before its request was whole: nobody reads the answer


def create_app(model: TrainedModel, options: ServeOptions) -> FastAPI:
    metrics = ServeMetrics()
    cache_dir = options.cache_dir or default_cache_dir()
    fetch = FetchOptions(cache_dir=cache_dir, max_filesize_bytes=options.max_filesize_bytes)
    # yt-dlp follows redirects itself: its every connection goes through a proxy that checks the address
    egress = None if options.allow_private_urls else EgressProxy()
    if egress is not None:
        fetch = replace(fetch, proxy=egress.url)

    def run(
        sources: Sequence[str], chosen: PredictOptions, stop: Callable[[], bool]
    ) -> tuple[dict[str, Prediction], dict[str, str]]:
        done = predict_all(model, list(sources), cache_dir, chosen, fetch, progress=False, stop=stop)
        return {p.source: p for p in done.predictions}, {f.item.source: f.reason for f in done.embed.failures}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(
            run,
            metrics,
            max_queue=options.max_queue,
            max_batch_inputs=options.max_batch_inputs,
            wait_s=options.batch_wait_s,
        )
        yield
        await run_in_threadpool(app.state.batcher.close)  # accepted requests finish first
        if egress is not None:
            egress.close()

    # /docs and /redoc from files inside fastapi-offline: like the page, they work without a CDN
    app = FastAPIOffline(title="audioclf", version=__version__, lifespan=lifespan)
    app.state.model, app.state.options, app.state.metrics = model, options, metrics
    _middleware(app, options, metrics)
    _error_handlers(app)
    _routes(app, model, options, metrics)
    return app


def _middleware(app: FastAPI, options: ServeOptions, metrics: ServeMetrics) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started, path = time.perf_counter(), request.url.path
        route = path if path in ("/", "/healthz", "/metrics", "/v1/model", "/v1/predict") else "other"
        if path.startswith(API_PREFIXES) and not token_ok(request.headers.get("authorization"), options.token):
            response: Response = _error(401, "missing or wrong token: send Authorization: Bearer <token>")
        elif int(request.headers.get("content-length") or 0) > options.max_upload_bytes:
            response = _error(413, f"request larger than the {options.max_upload_bytes >> 20} MB upload limit")
        else:
            response = await call_next(request)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    if options.cors_origin:
        headers = ["Authorization", "Content-Type"]
        origins = [options.cors_origin]
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=headers)


def _error_handlers(app: FastAPI) -> None:
    statuses: list[tuple[type[Exception], int]] = [(QueueFull, 503), (TooLarge, 413), (Unauthorized, 401)]

    async def known(request: Request, exc: Exception) -> Response:
        status = next((code for kind, code in statuses if isinstance(exc, kind)), 400)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return _error(status, str(exc), headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
        return _error(422, f"{where}: {errors[0]['msg'] if errors else exc}")

    async def http_error(request: Request, exc: Exception) -> Response:  # routing's 404 and 405, in our shape
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        headers = exc.headers if isinstance(exc, HTTPException) else None
        message = {
            404: f"{request.url.path}: no such page or API route (the API is described at /docs)",
            405: f"{request.method} is not allowed on {request.url.path} (the API is described at /docs)",
        }.get(status, str(getattr(exc, "detail", exc)))
        return _error(status, message, dict(headers) if headers else None)

    async def gone(request: Request, exc: Exception) -> Response:
        log.info("%s: the client stopped sending its request", request.url.path)
        return _error(GONE, "the request was not received whole")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__} (see the server log)")

    app.add_exception_handler(AudioclfError, known)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, gone)
    app.add_exception_handler(Exception, unexpected)


def _routes(app: FastAPI, model: TrainedModel, options: ServeOptions, metrics: ServeMetrics) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=dict[str, object])  # JSON alias: recursive, which pydantic cannot build
    async def model_info() -> JSONObject:
        return model_summary(model)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict", openapi_extra=PREDICT_OPENAPI)
    async def predict(request: Request) -> Response:
        chosen = options_from_query(request.query_params, model)
        with tempfile.TemporaryDirectory(prefix="audioclf-upload-") as tmp:  # private (0700), removed after
            sources, names = await _inputs(request, Path(tmp), options)
            future = request.app.state.batcher.submit(list(sources), chosen)
            try:
                done, failed = await asyncio.wait_for(asyncio.wrap_future(future), options.timeout_s)
            except TimeoutError:
                return _error(504, f"no answer within {options.timeout_s:g} s; send fewer or shorter inputs")
        rows = [_row(s, names[s], done, failed) for s in sources]
        if not done:
            status = 415 if any(s in names and names[s] != s for s in sources) else 422
            return JSONResponse({"error": rows[0]["error"], "predictions": rows}, status_code=status)
        return JSONResponse({"predictions": rows})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


async def _inputs(request: Request, folder: Path, options: ServeOptions) -> tuple[list[str], dict[str, str]]:
    """The sources to label and the name each is reported under: uploads (multipart ``files``) saved into
    ``folder``, or ``{"url": …}`` / ``{"urls": […]}``."""
    kind = request.headers.get("content-type", "")
    names: dict[str, str] = {}
    if kind.startswith("multipart/form-data"):
        uploads = await receive_uploads(
            kind, request.stream(), folder, options.max_upload_bytes, options.max_batch_inputs
        )
        names = {str(u.path.resolve()): u.client_name for u in uploads}
        return list(names), names
    urls = _urls(await _json_body(request))
    if len(urls) > options.max_batch_inputs:
        raise AudioclfError(
            f"{len(urls)} URLs in one request; send at most {options.max_batch_inputs} (the rest in other requests)"
        )
    checked = [checked_url(u, allow_private=options.allow_private_urls) for u in urls]
    return checked, {u: u for u in checked}


async def _json_body(request: Request) -> object:
    """The JSON body, read up to ``JSON_LIMIT_BYTES`` (also without a Content-Length)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > JSON_LIMIT_BYTES:
            raise TooLarge(f"JSON body over {JSON_LIMIT_BYTES >> 10} KB; send fewer URLs per request")
    try:
        return json.loads(bytes(data))
    except RecursionError:
        raise AudioclfError('JSON body nested too deeply; send {"urls": ["https://…", …]}') from None
    except ValueError:
        raise AudioclfError('send audio files (multipart field "files") or JSON {"url": …} / {"urls": […]}') from None


def _urls(body: object) -> list[str]:
    if isinstance(body, dict):
        urls = body.get("urls") or ([body["url"]] if body.get("url") else [])
        if isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls):
            return urls
    raise AudioclfError('JSON body: give {"url": "https://…"} or {"urls": ["https://…", …]}')


def _row(source: str, name: str, done: dict[str, Prediction], failed: dict[str, str]) -> dict[str, object]:
    if source in done:
        return {**done[source].as_dict(), "source": name}
    reason = failed.get(source, "not labelled").replace(source, name)  # never show the server's own paths
    return {"source": name, "error": reason}


def model_summary(model: TrainedModel) -> JSONObject:
    return model.card.summary()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
