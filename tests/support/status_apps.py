"""The small app the status page tests serve: a passing check, optionally a failing one,
and ``/work`` (200) and ``/fail`` (500) routes that :func:`drive` calls."""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics


def make_app(config: dict[str, Any] | None = None, *, failing_check: bool = False) -> Flask:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.health_check("database", critical=False)
    def database() -> bool:
        return True

    if failing_check:

        @metrics.health_check("cache", critical=False)
        def cache() -> bool:
            raise ConnectionError("cache unreachable")

    app = Flask("status_test")
    app.config.update(config or {})
    metrics.init_app(app)

    @app.get("/work")
    def work() -> str:
        return "done"

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "failed", 500

    return app


def drive(app: Flask, ok: int, failed: int) -> None:
    client = app.test_client()
    for _ in range(ok):
        assert client.get("/work").status_code == 200
    for _ in range(failed):
        assert client.get("/fail").status_code == 500
