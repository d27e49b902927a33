"""The HTTP service: the model loaded once, requests micro-batched off the event loop, a corpus index searched
off it too (``search.py``), JSON errors with status codes, a token on every API route, and the web page from
files inside the package. A server started with only an index answers the model's routes with a 404 error."""

from __future__ import annotations

import asyncio
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

from audioclf.annotation.labels import Mode
from audioclf.corpus.index import Index
from audioclf.errors import AudioclfError
from audioclf.fileio import JSONObject
from audioclf.io.cache import default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.labelling.inputs import predict_all
from audioclf.labelling.prediction import Prediction, PredictOptions
from audioclf.model.folder import TrainedModel
from audioclf.serve.batcher import MicroBatcher, QueueFull
from audioclf.serve.corpus_index import AUDIO_ROUTE, CorpusIndex, Lane, NoSuchWindow, NotAudio, NoTranscripts
from audioclf.serve.egress import EgressProxy
from audioclf.serve.guard import Unauthorized, checked_url, token_ok
from audioclf.serve.metrics import ServeMetrics
from audioclf.serve.options import ServeOptions
from audioclf.serve.query import PREDICT_OPENAPI, options_from_query
from audioclf.serve.responses import JsonHints, error_response, read_json
from audioclf.serve.review import REVIEW_ROUTE, SPECTROGRAM_ROUTE, NoLabels, Review, add_review_routes
from audioclf.serve.search import TooSlow, add_search_routes
from audioclf.serve.uploads import TooLarge, receive_uploads
from audioclf.version import __version__

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
API_PREFIXES = ("/v1/", "/metrics")
ROUTES = (
    "/",
    "/healthz",
    "/metrics",
    "/v1/model",
    "/v1/predict",
    "/v1/index",
    "/v1/search",
    REVIEW_ROUTE + "/queue",
    REVIEW_ROUTE + "/answer",
    REVIEW_ROUTE + "/undo",
)
NO_MODEL = "no model loaded; start serve with a model (--model) to label audio"
AUDIO_WORKERS = 2
RETRY_AFTER_S = 1
JSON_LIMIT_BYTES = 1 << 20  # {"urls": [...]}: at most max_batch_inputs URLs, each a few KB at most
GONE = 499  # the client went away (or stopped sending) before its request was whole: nobody reads the answer
JSON_HINTS = JsonHints(
    too_large="send fewer URLs per request",
    nested='send {"urls": ["https://…", …]}',
    invalid='send audio files (multipart field "files") or JSON {"url": …} / {"urls": […]}',
)


class NoModel(AudioclfError):
    """A model route on a server started with only an index."""


def create_app(
    model: TrainedModel | None,
    options: ServeOptions,
    index: Index | None = None,
    labels_path: Path | None = None,
    annotator: str = "",
    labels_mode: Mode | None = None,
) -> FastAPI:
    """The app for a model, a corpus index (searched at ``/v1/search``), or both; with an index and a labels
    file, the review routes (``/v1/review``) too. The app closes the index and the labels."""
    if model is None and index is None:
        raise AudioclfError("serve needs a trained model, a corpus index or both: give --model and/or --index")
    if labels_path is not None and index is None:
        raise AudioclfError("reviewing labels needs the index they are made on: give --index", option="labels")
    metrics = ServeMetrics()
    runner = None if model is None else _ModelRunner(model, options)
    corpus = None if index is None else CorpusIndex(index)
    review = (
        None if index is None or labels_path is None else Review.open(index, labels_path, annotator, model, labels_mode)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runner is not None:
            app.state.batcher = MicroBatcher(
                runner.run,
                metrics,
                max_queue=options.max_queue,
                max_batch_inputs=options.max_batch_inputs,
                wait_s=options.batch_wait_s,
            )
        if corpus is not None:
            app.state.search_lane = Lane("search", 1, options.max_queue, metrics.rejected.inc)
            app.state.audio_lane = Lane("audio", AUDIO_WORKERS, options.max_queue, metrics.rejected.inc)
        yield
        if runner is not None:  # accepted requests finish first
            await run_in_threadpool(app.state.batcher.close)
            runner.close()
        if corpus is not None:
            await run_in_threadpool(app.state.search_lane.close)
            await run_in_threadpool(app.state.audio_lane.close)
            if review is not None:
                review.close()
            corpus.close()

    # /docs and /redoc from files inside fastapi-offline: like the page, they work without a CDN
    app = FastAPIOffline(title="audioclf", version=__version__, lifespan=lifespan)
    app.state.model, app.state.options, app.state.metrics = model, options, metrics
    _middleware(app, options, metrics)
    _error_handlers(app)
    _routes(app, model, options, metrics)
    if corpus is not None:
        add_search_routes(app, corpus, options)
        add_review_routes(app, corpus, review, options)
    return app


class _ModelRunner:
    """The model's batches: inputs predicted (URLs fetched through the egress check) on the batcher's thread."""

    def __init__(self, model: TrainedModel, options: ServeOptions) -> None:
        self.model = model
        self.cache_dir = options.cache_dir or default_cache_dir()
        self.fetch = FetchOptions(cache_dir=self.cache_dir, max_filesize_bytes=options.max_filesize_bytes)
        # yt-dlp follows redirects itself: its every connection goes through a proxy that checks the address
        self.egress = None if options.allow_private_urls else EgressProxy()
        if self.egress is not None:
            self.fetch = replace(self.fetch, proxy=self.egress.url)

    def run(
        self, sources: Sequence[str], chosen: PredictOptions, stop: Callable[[], bool]
    ) -> tuple[dict[str, Prediction], dict[str, str]]:
        done = predict_all(self.model, list(sources), self.cache_dir, chosen, self.fetch, progress=False, stop=stop)
        return {p.source: p for p in done.predictions}, {f.item.source: f.reason for f in done.embed.failures}

    def close(self) -> None:
        if self.egress is not None:
            self.egress.close()


def _middleware(app: FastAPI, options: ServeOptions, metrics: ServeMetrics) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started, path = time.perf_counter(), request.url.path
        route = (
            path
            if path in ROUTES
            else next((p for p in (AUDIO_ROUTE, SPECTROGRAM_ROUTE) if path.startswith(p + "/")), "other")
        )
        if path.startswith(API_PREFIXES) and not token_ok(request.headers.get("authorization"), options.token):
            response: Response = error_response(401, "missing or wrong token: send Authorization: Bearer <token>")
        elif int(request.headers.get("content-length") or 0) > options.max_upload_bytes:
            response = error_response(413, f"request larger than the {options.max_upload_bytes >> 20} MB upload limit")
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
    statuses: list[tuple[type[Exception], int]] = [
        (QueueFull, 503),
        (TooLarge, 413),
        (Unauthorized, 401),
        (NoModel, 404),
        (NoLabels, 404),
        (NoSuchWindow, 404),
        (NotAudio, 415),
        (NoTranscripts, 409),
        (TooSlow, 504),
    ]

    async def known(request: Request, exc: Exception) -> Response:
        status = next((code for kind, code in statuses if isinstance(exc, kind)), 400)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return error_response(status, str(exc), headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
        return error_response(422, f"{where}: {errors[0]['msg'] if errors else exc}")

    async def http_error(request: Request, exc: Exception) -> Response:  # routing's 404 and 405, in our shape
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        headers = exc.headers if isinstance(exc, HTTPException) else None
        message = {
            404: f"{request.url.path}: no such page or API route (the API is described at /docs)",
            405: f"{request.method} is not allowed on {request.url.path} (the API is described at /docs)",
        }.get(status, str(getattr(exc, "detail", exc)))
        return error_response(status, message, dict(headers) if headers else None)

    async def gone(request: Request, exc: Exception) -> Response:
        log.info("%s: the client stopped sending its request", request.url.path)
        return error_response(GONE, "the request was not received whole")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__} (see the server log)")

    app.add_exception_handler(AudioclfError, known)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, gone)
    app.add_exception_handler(Exception, unexpected)


def _routes(app: FastAPI, model: TrainedModel | None, options: ServeOptions, metrics: ServeMetrics) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=dict[str, object])  # JSON alias: recursive, which pydantic cannot build
    async def model_info() -> JSONObject:
        if model is None:
            raise NoModel(NO_MODEL)
        return model_summary(model)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict", openapi_extra=PREDICT_OPENAPI)
    async def predict(request: Request) -> Response:
        if model is None:
            raise NoModel(NO_MODEL)
        chosen = options_from_query(request.query_params, model)
        with tempfile.TemporaryDirectory(prefix="audioclf-upload-") as tmp:  # private (0700), removed after
            sources, names = await _inputs(request, Path(tmp), options)
            future = request.app.state.batcher.submit(list(sources), chosen)
            try:
                done, failed = await asyncio.wait_for(asyncio.wrap_future(future), options.timeout_s)
            except TimeoutError:
                return error_response(504, f"no answer within {options.timeout_s:g} s; send fewer or shorter inputs")
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
    urls = _urls(await read_json(request, JSON_LIMIT_BYTES, JSON_HINTS))
    if len(urls) > options.max_batch_inputs:
        raise AudioclfError(
            f"{len(urls)} URLs in one request; send at most {options.max_batch_inputs} (the rest in other requests)"
        )
    checked = [checked_url(u, allow_private=options.allow_private_urls) for u in urls]
    return checked, {u: u for u in checked}


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
