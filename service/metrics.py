"""Prometheus metrics: requests, latency per route and stage, batch sizes, index size."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from retriever.timing import StageTimer

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("retriever_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("retriever_request_seconds", "Request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage = Histogram("retriever_stage_seconds", "Latency of a pipeline stage", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("retriever_batch_size", "Items per model call", ["batcher"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.index_size = Gauge("retriever_index_documents", "Documents in an index", ["index"],
                                registry=self.registry)


def method_label(method: str) -> str:
    """A bounded label: any method a client invents counts as ``other``."""
    return method if method in HTTP_METHODS else "other"


class Timer(StageTimer):
    """A request's stage timings, each also observed in the ``retriever_stage_seconds`` histogram."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        super().__init__(lambda name, seconds: metrics.stage.labels(name).observe(seconds))
        self.metrics = metrics
