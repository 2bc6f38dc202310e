"""Redis killed while threads send requests: the request path keeps serving, every request
is counted, ``/metrics`` answers, the health report and the internal-error counter show the
fault, and health recovers when Redis is back."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.faults import fault_app, get, scrape, serve
from tests.support.redis_server import RedisServer

REQUESTS = 200


@pytest.mark.slow
def test_redis_killed_under_traffic_loses_no_count(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        app = fault_app(
            FlaskMetrics(registry=registry),
            APPMETRICS_REDIS_URL=server.url,
            APPMETRICS_REDIS_RETRY_SECONDS=0.0,
        )
        errors: list[BaseException] = []
        half = threading.Barrier(5)

        def traffic() -> None:
            try:
                serve(app, REQUESTS // 2)
                half.wait(30)
                serve(app, REQUESTS // 2)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        half.wait(30)
        server.kill()  # mid-run: half the requests are still to come
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        samples = scrape(app)  # /metrics answers with Redis gone
        health = json.loads(get(app, "/api/health")[1])
        assert health["checks"]["redis"]["status"] == "fail"
        assert samples[("flask_appmetrics_internal_errors_total", (("component", "redis"),))] >= 1
        # Prometheus counters live in the process: every request counted.
        labels = {"method": "GET", "endpoint": "/work/<int:n>", "status": "200"}
        assert registry.get_sample_value("http_requests_total", labels) == 4 * REQUESTS

        server.start()  # back: health recovers, traffic goes on
        serve(app, 10)
        # The first call after the restart may still hit the 50 ms timeout on a loaded
        # machine; recovery is what counts, within a few seconds.
        deadline = time.monotonic() + 5.0
        while True:
            health = json.loads(get(app, "/api/health")[1])
            if health["checks"]["redis"]["status"] == "pass" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert health["checks"]["redis"]["status"] == "pass"
        assert registry.get_sample_value("http_requests_total", labels) == 4 * REQUESTS + 10
    finally:
        server.kill()
