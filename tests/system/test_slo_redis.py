"""Objective windows shared through a real redis-server: every worker's requests count in
each worker's burn rates (the ``shared`` view), and the in-process view answers while
Redis is away (labelled ``process``)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask, abort
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.redis_server import RedisServer
from tests.support.wsgi import serve

pytestmark = pytest.mark.slow


def worker(url: str) -> Flask:
    """One worker (or host) of the service: its own registry and windows, a shared Redis."""
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("slo_worker")
    app.config.update(
        APPMETRICS_REDIS_URL=url,
        APPMETRICS_REDIS_PREFIX="slo-test",
        APPMETRICS_REDIS_FLUSH_SECONDS=0.0,  # write-through: one worker sees the other's
        APPMETRICS_REDIS_RETRY_SECONDS=3600.0,  # once down, stay local for the test
        APPMETRICS_HEALTH_MIN_REQUESTS=0,
    )
    metrics.init_app(app)

    @app.get("/work/<int:fail>")
    @metrics.slo(availability=0.99)
    def work(fail: int) -> str:
        if fail:
            abort(500)
        return "ok"

    return app


def objective(app: Flask) -> dict[str, Any]:
    body: dict[str, Any] = serve(app, "/api/health").json()
    (found,) = body["objectives"]
    found["app_status"] = body["status"]
    return found


def test_every_worker_sees_every_workers_requests(redis_server: RedisServer) -> None:
    a, b = worker(redis_server.url), worker(redis_server.url)
    for _ in range(8):
        serve(a, "/work/0")
    for _ in range(2):
        serve(b, "/work/1")
    for app in (a, b):
        seen = objective(app)
        assert seen["scope"] == "shared"
        assert (seen["requests"], seen["bad_requests"]) == (10, 2)
        assert seen["burn_rates"]["5m"] == pytest.approx(20.0)
        assert seen["app_status"] == "degraded"  # a fast burn, seen by both workers
    keys = redis.Redis.from_url(redis_server.url).keys("slo-test:slo:*")
    assert sorted(keys) == [b"slo-test:slo:work:availability:%d" % i for i in range(3)]

    # Redis goes away: each worker falls back to its own requests, and says so.
    redis_server.kill()
    serve(a, "/work/0")
    seen = objective(a)
    assert seen["scope"] == "process"
    assert (seen["requests"], seen["bad_requests"]) == (9, 0)
    assert objective(b)["requests"] == 2
