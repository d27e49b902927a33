"""Micro-batching: requests wait in a bounded queue; one worker thread takes the first and whatever else
arrives within a few milliseconds (up to a number of inputs), runs the model once over all their inputs (so
their windows share encoder calls, as ``embed`` does for files), and hands each request its own results.

A request that gives up (its time limit passed) cancels its future; when every request of the batch being run
has given up, the run stops at its next checkpoint (``embed_items`` asks before each input and each encoder
call, where nothing is half-done) and the worker takes the next batch."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from audioclf.errors import AudioclfError, RunStopped, first_line
from audioclf.labelling.prediction import Prediction, PredictOptions
from audioclf.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)

# (sources, options, should it stop now?) -> (prediction per labelled source, reason per failed source)
RunBatch = Callable[[Sequence[str], PredictOptions, Callable[[], bool]], tuple[dict[str, Prediction], dict[str, str]]]


class QueueFull(AudioclfError):
    """More requests are waiting than the server accepts; the client should retry later."""


@dataclass
class Job:
    sources: list[str]
    options: PredictOptions
    future: Future[tuple[dict[str, Prediction], dict[str, str]]] = field(default_factory=Future)


class MicroBatcher:
    def __init__(
        self, run: RunBatch, metrics: ServeMetrics, *, max_queue: int, max_batch_inputs: int, wait_s: float
    ) -> None:
        self._run, self._metrics = run, metrics
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._max_inputs, self._wait_s = max_batch_inputs, wait_s
        self._thread = threading.Thread(target=self._loop, name="audioclf-batcher", daemon=True)
        self._thread.start()

    def submit(
        self, sources: list[str], options: PredictOptions
    ) -> Future[tuple[dict[str, Prediction], dict[str, str]]]:
        job = Job(sources, options)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._metrics.rejected.inc()
            raise QueueFull("the server is busy: too many requests are waiting; retry in a moment") from None
        self._metrics.queue_depth.set(self._queue.qsize())
        return job.future

    def close(self) -> None:
        """Finish every accepted request, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._metrics.queue_depth.set(self._queue.qsize())
            for group in _by_options(batch):
                self._serve(group)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch, n_inputs = [first], len(first.sources)
        deadline = time.monotonic() + self._wait_s
        while n_inputs < self._max_inputs:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:  # closing: serve what was gathered, then stop
                return batch, True
            batch.append(job)
            n_inputs += len(job.sources)
        return batch, False

    def _serve(self, jobs: list[Job]) -> None:
        jobs = [job for job in jobs if not job.future.cancelled()]  # timed out while waiting: not worth running
        if not jobs:
            return
        sources = list(dict.fromkeys(s for job in jobs for s in job.sources))
        self._metrics.batch_inputs.observe(len(sources))
        try:
            done, failed = self._run(sources, jobs[0].options, lambda: all(job.future.cancelled() for job in jobs))
        except RunStopped:
            self._metrics.abandoned.inc()
            log.info("stopped a run of %d input(s): every request that asked for it gave up", len(sources))
            return
        except AudioclfError as exc:  # the batch as a whole (e.g. nothing readable): each request gets the line
            done, failed = {}, {s: str(exc) for s in sources}
        except Exception as exc:  # a bug must not kill the worker: the requests get a one-line error, logged
            log.exception("prediction failed")
            done, failed = {}, {s: f"internal error: {first_line(exc)}" for s in sources}
        self._metrics.failed_inputs.inc(len(failed))
        for job in jobs:
            mine = {s: done[s] for s in job.sources if s in done}
            try:
                job.future.set_result((mine, {s: failed[s] for s in job.sources if s in failed}))
            except InvalidStateError:  # its request timed out meanwhile: the worker must live on
                log.debug("a request gave up before its answer was ready")


def _by_options(jobs: list[Job]) -> list[list[Job]]:
    """Requests that asked for the same options run together."""
    groups: dict[PredictOptions, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.options, []).append(job)
    return list(groups.values())
