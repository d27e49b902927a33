"""What /metrics exposes (Prometheus text format, one registry per app): requests by route and status, latency,
the queue depth, batch sizes and failed inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ServeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("audioclf_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "audioclf_request_seconds",
            "request latency",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.queue_depth = Gauge("audioclf_queue_depth", "requests waiting for the model", registry=r)
        self.batch_inputs = Histogram(
            "audioclf_batch_inputs", "inputs per model pass", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.failed_inputs = Counter("audioclf_failed_inputs", "inputs that could not be labelled", registry=r)
        self.abandoned = Counter(
            "audioclf_abandoned_runs", "model runs stopped because their requests timed out", registry=r
        )
        self.rejected = Counter("audioclf_rejected", "requests refused because the queue was full", registry=r)
