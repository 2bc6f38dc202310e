"""The floor the benchmarks compare flask-appmetrics with: hand-written instrumentation.

Two hooks updating prometheus_client children of the three HTTP metrics, bound once for the
one route the benchmark apps serve (no health windows, no users, no exemplars): what the
obvious instrumentation with these metrics costs. ``benchmarks/overhead.py`` runs it in
process, ``benchmarks/load.py`` under gunicorn in multiprocess mode.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

#: The route both benchmark apps serve.
ROUTE = "/items/<int:item_id>"


def instrument_by_hand(app: Flask, registry: CollectorRegistry = REGISTRY) -> None:
    """Count, time and track in progress *app*'s requests of :data:`ROUTE` in *registry*."""
    labels = ("GET", ROUTE)
    total = Counter("req_total", "x", ["method", "endpoint", "status"], registry=registry)
    duration = Histogram("req_seconds", "x", ["method", "endpoint"], registry=registry)
    # livesum: what a gauge of requests in progress needs in multiprocess mode.
    progress = Gauge(
        "req_in_progress", "x", ["method", "endpoint"], registry=registry,
        multiprocess_mode="livesum",
    )  # fmt: skip
    total_child = total.labels(*labels, "200")
    duration_child = duration.labels(*labels)
    progress_child = progress.labels(*labels)

    @app.before_request
    def start() -> None:
        progress_child.inc()
        request.environ["bench.start"] = time.perf_counter()

    @app.after_request
    def stop(response: Any) -> Any:
        duration_child.observe(time.perf_counter() - request.environ["bench.start"])
        total_child.inc()
        progress_child.dec()
        return response
