"""The app the fault tests serve (``/work/<n>`` records a cache hit or miss) and how they
drive and scrape it, through the WSGI callable as a server calls it."""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import FlaskMetrics, record_cache_event
from tests.support.traffic import environ_for, respond


def fault_app(metrics: FlaskMetrics, **config: Any) -> Flask:
    app = Flask("faults")
    app.log_exception = lambda exc_info: None  # type: ignore[method-assign]
    app.config.update(config)

    @app.get("/work/<int:n>")
    def work(n: int) -> str:
        record_cache_event(hit=n % 2 == 0)
        return "ok"

    metrics.init_app(app)
    return app


def get(app: Flask, path: str) -> tuple[int, bytes]:
    status, body = respond(app, environ_for("GET", path))
    return int(status[:3]), body


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(app, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode("utf-8"))
        for s in f.samples
    }


def serve(app: Flask, n: int) -> None:
    """*n* requests that must all succeed."""
    for i in range(n):
        assert get(app, f"/work/{i}")[0] == 200
