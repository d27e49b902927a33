"""The review routes, when ``serve`` runs with an index and a labels file (``audioclf review``):
``GET /v1/review/queue`` (what to label next, leased to the reviewer who asked), ``POST /v1/review/answer``
(acknowledged only once the answer is on disk), ``POST /v1/review/undo`` and
``GET /v1/review/spectrogram/{id}`` (a PNG drawn here); an item's audio is ``/v1/search/audio/{id}``.

Every call on the labels and the index runs on the search lane's one thread, one at a time: the labels log's
connection and its lease transactions are never shared between threads, and two reviewers asking for a queue
at once are served in turn, so the second never gets a window leased to the first. Spectrograms decode on the
audio lane."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from audioclf.annotation.labels import Answer, Kind, Labels, Mode, Origin
from audioclf.annotation.queue import QueueFrom, QueueSource, fill_queue
from audioclf.annotation.scorers import NONE_CLASS, TrainedScorer
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Index
from audioclf.errors import AudioclfError
from audioclf.fileio import JSON, JSONObject
from audioclf.model.folder import TrainedModel
from audioclf.serve.corpus_index import AUDIO_ROUTE, CorpusIndex, NoSuchWindow, clip_start
from audioclf.serve.options import ServeOptions
from audioclf.serve.query import read_whole
from audioclf.serve.responses import JsonHints, json_object, read_json
from audioclf.serve.search import answer_in_time
from audioclf.serve.spectrogram import spectrogram_png

REVIEW_ROUTE = "/v1/review"
SPECTROGRAM_ROUTE = REVIEW_ROUTE + "/spectrogram"
MAX_QUEUE = 50
MAX_NAME_CHARS = 100
ANSWER_KEYS = ("id", "kind", "label", "annotator", "origin")
ANSWER_KINDS = (Kind.LABEL, Kind.NOT, Kind.NONE, Kind.SKIP)
JSON_LIMIT_BYTES = 16 << 10
JSON_HINTS = JsonHints(
    too_large="send one answer at a time",
    nested='send {"id": 12, "kind": "label", "label": "bird", "annotator": "ana"}',
    invalid='send JSON {"id": 12, "kind": "label", "label": "bird", "annotator": "ana"}',
)


class NoLabels(AudioclfError):
    """A review route on a server started without a labels file."""


NO_LABELS = "this server has no labels file: start it with audioclf review IDX --labels labels.csv"


@dataclass
class Review:
    """The labels being made on an index, and what the review routes do with them (on the lane's thread)."""

    index: Index
    labels: Labels
    annotator: str = ""  # the server's default reviewer
    model: TrainedModel | None = None  # the server's model: its predictions on the index make a queue
    _scorer: TrainedScorer | CorpusError | None = None

    @classmethod
    def open(
        cls,
        index: Index,
        labels_path: str | Path,
        annotator: str = "",
        model: TrainedModel | None = None,
        mode: Mode | None = None,
    ) -> Review:
        return cls(index, Labels(labels_path, index.card.id, mode), annotator, model)

    def close(self) -> None:
        self.labels.close()

    def scorer(self) -> TrainedScorer | None:
        """The trained model over the index's stored vectors, made on first use (None without a model); a model
        that cannot score this index raises the same one-line reason each time."""
        if self.model is not None and self._scorer is None:
            try:
                self._scorer = TrainedScorer(self.model, self.index)
            except CorpusError as exc:
                self._scorer = exc
        if isinstance(self._scorer, CorpusError):
            raise self._scorer
        return self._scorer

    def queue(self, n: int, source: QueueSource, annotator: str) -> JSONObject:
        scorer = self.scorer() if source.kind is QueueFrom.MODEL else None
        suggested = fill_queue(self.index, self.labels, n, source, model=scorer, annotator=annotator)
        held = set(self.labels.lease([s.window_id for s in suggested.suggestions], annotator))
        mine = [s for s in suggested.suggestions if s.window_id in held]
        transcripts = {i: r.transcript for i, r in self.index.store.rows([s.window_id for s in mine]).items()}
        items: list[JSON] = [
            {
                **s.to_dict(),
                "transcript": transcripts.get(s.window_id),
                "audio": f"{AUDIO_ROUTE}/{s.window_id}",
                "audio_from_s": round(clip_start(s.start_s), 3),
                "spectrogram": f"{SPECTROGRAM_ROUTE}/{s.window_id}",
                "origin": str(source.origin),
            }
            for s in mine
        ]
        return {
            "items": items,
            "from": str(source.kind),
            "scored_by": _scored_by(source, scorer),
            "strategy": None if suggested.strategy is None else str(suggested.strategy),
            "note": suggested.note,
            "annotator": annotator,
            **self.progress(),
        }

    def answer(self, window_id: int, kind: Kind, label: str | None, annotator: str, origin: Origin) -> JSONObject:
        row = self.index.store.rows([window_id]).get(window_id)
        if row is None:
            raise NoSuchWindow(f"window {window_id}: not in this index; answer about the ids the queue gives")
        done = self.labels.add(row, kind, label, annotator=annotator, origin=origin)  # durable when it returns
        return {"answer": _answer_dict(done), **self.progress()}

    def undo(self, annotator: str) -> JSONObject:
        undone = self.labels.undo(annotator)
        if undone is not None:  # the window goes back to the one who took the answer back
            self.labels.lease([undone.window], annotator)
        return {"undone": None if undone is None else _answer_dict(undone), **self.progress()}

    def progress(self) -> JSONObject:
        counts = self.labels.counts()
        labels: list[JSON] = list(self.labels.labels())
        return {
            "labels": labels,
            "counts": dict(sorted(counts.items())),
            "mode": str(self.labels.mode),
            "has_model": self.model is not None,
        }


def _scored_by(source: QueueSource, scorer: TrainedScorer | None) -> str | None:
    if source.kind is QueueFrom.SEARCH:
        return "similarity"
    return "the quick model" if scorer is None else f"the model {Path(scorer.source).name}"


def add_review_routes(app: FastAPI, corpus: CorpusIndex, review: Review | None, options: ServeOptions) -> None:
    def ready() -> Review:
        if review is None:
            raise NoLabels(NO_LABELS)
        return review

    @app.get(REVIEW_ROUTE + "/queue", response_model=dict[str, object])
    async def queue(request: Request) -> JSONObject:
        chosen = ready()
        query = request.query_params
        n = read_whole(query, "n", 10)
        if not 1 <= n <= MAX_QUEUE:
            raise AudioclfError(f"n={n}: ask for 1 to {MAX_QUEUE} items")
        source = QueueSource.parse(query.get("from"), query.get("strategy"), query.get("text"), query.get("like"))
        who = _name(query.get("annotator"), "annotator") or chosen.annotator
        return await answer_in_time(request.app.state.search_lane.submit(chosen.queue, n, source, who), options)

    @app.post(REVIEW_ROUTE + "/answer", response_model=dict[str, object])
    async def answer(request: Request) -> JSONObject:
        chosen = ready()
        window_id, kind, label, who, origin = answer_request(await read_json(request, JSON_LIMIT_BYTES, JSON_HINTS))
        job = request.app.state.search_lane.submit(
            chosen.answer, window_id, kind, label, who or chosen.annotator, origin
        )
        return await answer_in_time(job, options)

    @app.post(REVIEW_ROUTE + "/undo", response_model=dict[str, object])
    async def undo(request: Request) -> JSONObject:
        chosen = ready()
        body = await read_json(request, JSON_LIMIT_BYTES, JSON_HINTS)
        if not isinstance(body, dict) or set(body) - {"annotator"}:
            raise AudioclfError('send JSON {"annotator": "NAME"} (the reviewer whose latest answer to take back)')
        who = _name(body.get("annotator"), "annotator") or chosen.annotator
        return await answer_in_time(request.app.state.search_lane.submit(chosen.undo, who), options)

    @app.get(SPECTROGRAM_ROUTE + "/{window_id}")
    async def spectrogram(request: Request, window_id: str) -> Response:
        if not re.fullmatch(r"\d{1,18}", window_id, re.ASCII):
            raise NoSuchWindow(f"window {window_id[:40]!r}: not in this index; use the ids the queue gives")
        png = await answer_in_time(request.app.state.audio_lane.submit(_png, corpus, int(window_id)), options)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _png(corpus: CorpusIndex, window_id: int) -> bytes:
    clip = corpus.clip_samples(window_id)
    return spectrogram_png(clip.samples, clip.window_from_s, clip.window_to_s)


def answer_request(body: object) -> tuple[int, Kind, str | None, str, Origin]:
    """``{"id": …, "kind": …, "label": …, "annotator": …, "origin": …}``, checked."""
    body = json_object(body, tuple(ANSWER_KEYS), JSON_HINTS)
    window_id = body.get("id")
    if isinstance(window_id, bool) or not isinstance(window_id, int) or not 0 <= window_id < 1 << 62:
        raise AudioclfError(f"id={window_id!r}: give the window id the queue answered with (a whole number)")
    kinds = ", ".join(str(k) for k in ANSWER_KINDS)
    try:
        kind = Kind(str(body.get("kind")))
    except ValueError:
        kind = Kind.UNDO
    if kind not in ANSWER_KINDS:
        raise AudioclfError(f"kind={body.get('kind')!r}: use one of {kinds} (undo has its own route)")
    label = _name(body.get("label"), "label")
    if kind in (Kind.LABEL, Kind.NOT) and not label:
        raise AudioclfError(f'kind={kind}: give the label too, e.g. {{"kind": "{kind}", "label": "bird"}}')
    if label == NONE_CLASS:
        raise AudioclfError(f'label={label!r}: "none of them" is an answer of its own: send kind none')
    try:
        origin = Origin(str(body.get("origin", Origin.SUGGESTION)))
    except ValueError:
        origins = ", ".join(str(o) for o in Origin)
        raise AudioclfError(f"origin={body.get('origin')!r}: use one of {origins}") from None
    return (
        window_id,
        kind,
        label if kind in (Kind.LABEL, Kind.NOT) else None,
        _name(body.get("annotator"), "annotator"),
        origin,
    )


def _name(value: object, key: str) -> str:
    """A label or a reviewer's name: one line of printable text, at most ``MAX_NAME_CHARS``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AudioclfError(f"{key}={value!r}: give a name (text)")
    name = value.strip()
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise AudioclfError(f"{key}: use one line of at most {MAX_NAME_CHARS} printable characters")
    return name


def _answer_dict(answer: Answer) -> JSONObject:
    return {
        "id": answer.window,
        "kind": str(answer.kind),
        "label": answer.label,
        "annotator": answer.annotator,
        "origin": str(answer.origin),
    }
