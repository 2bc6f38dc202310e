"""Faults: the request path keeps serving, ``/metrics`` keeps answering, counters lose
nothing, and the fault shows (a log line, the health report, or
``flask_appmetrics_internal_errors_total``).

Covered here: a user health check that raises or hangs, cache size callables that raise
or return garbage, a receiver of the app's own that raises on our signals, a scrape in the
middle of a streamed response and during traffic. Covered elsewhere, not repeated: Redis
killed while threads send requests (``tests/system/test_redis_faults.py``), a gunicorn
worker killed mid-request
(``tests/system/test_gunicorn.py::test_every_scrape_sums_all_workers_including_dead_ones``: no
stuck in-progress gauge, the dead worker's counts kept), Redis down and back with the
fallback and recovery logged (``tests/system/test_redis.py::
test_redis_going_away_mid_run_falls_back_and_recovers``), a hung Redis
(``test_a_hung_redis_costs_one_timeout_then_nothing``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context
from prometheus_client import CollectorRegistry

from flask_appmetrics import (
    FlaskMetrics,
    record_gemini_usage,
    signals,
)
from tests.support.faults import fault_app, get, scrape, serve
from tests.support.traffic import environ_for, respond

REQUESTS = 200


def assert_all_counted(registry: CollectorRegistry, n: int) -> None:
    labels = {"method": "GET", "endpoint": "/work/<int:n>", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == n
    ops = "cache_operations_total"
    hits = registry.get_sample_value(ops, {"operation": "get", "result": "hit"})
    misses = registry.get_sample_value(ops, {"operation": "get", "result": "miss"})
    assert (hits, misses) == (n - n // 2, n // 2)


# -- health checks -------------------------------------------------------------------------


@pytest.mark.parametrize("critical", [True, False])
def test_a_raising_health_check_is_a_result_not_a_crash(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, critical: bool
) -> None:
    metrics = FlaskMetrics(registry=registry)

    @metrics.health_check("database", critical=critical)
    def database() -> bool:
        raise ConnectionError("db host unreachable")

    app = fault_app(metrics)
    serve(app, REQUESTS)
    status, body = get(app, "/api/health")
    health = json.loads(body)
    assert status == (503 if critical else 200)  # never a 500
    assert health["status"] == ("unhealthy" if critical else "degraded")
    assert health["checks"]["database"]["status"] == "fail"
    assert any("database" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    # The request path and /metrics are untouched, nothing lost.
    serve(app, REQUESTS)
    scrape(app)
    assert_all_counted(registry, 2 * REQUESTS)


def test_a_hung_health_check_costs_its_timeout_then_nothing(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    metrics = FlaskMetrics(registry=registry)

    @metrics.health_check("payments", critical=True, timeout=0.2)
    def payments() -> bool:
        started.release()
        release.wait(30)  # hangs until the test ends
        return True

    app = fault_app(metrics)
    try:
        for _ in range(5):
            # Each probe answers (503, the check timed out) instead of hanging.
            status, body = get(app, "/api/health")
            assert status == 503
            assert json.loads(body)["checks"]["payments"]["status"] == "fail"
            serve(app, REQUESTS // 5)
        scrape(app)
        # One hung run at a time: the later probes waited on the same one.
        assert started.acquire(timeout=0)
        assert not started.acquire(timeout=0)
        assert any(
            "payments" in r.getMessage() and "still running" in r.getMessage()
            for r in caplog.records
        )
        assert_all_counted(registry, REQUESTS)
    finally:
        release.set()


# -- cache size callables ------------------------------------------------------------------


def test_cache_size_callables_that_raise_or_return_garbage_skip_only_their_sample(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = FlaskMetrics(registry=registry)

    def broken() -> float:
        raise OSError("redis INFO failed")

    metrics.register_cache_layer("memory", size_bytes=lambda: 2048, items=lambda: 3)
    garbage: Any = lambda: "12 items"  # noqa: E731 - a callable of the wrong type
    metrics.register_cache_layer("redis", size_bytes=broken, items=garbage)
    metrics.register_cache_layer("disk", size_bytes=lambda: 10**400, items=object)  # type: ignore[arg-type]
    app = fault_app(metrics)

    serve(app, REQUESTS)
    for _ in range(3):
        samples = scrape(app)  # answers every time
        assert samples[("cache_size_bytes", (("layer", "memory"),))] == 2048
        assert samples[("cache_items_count", (("layer", "memory"),))] == 3
        assert ("cache_size_bytes", (("layer", "redis"),)) not in samples
        assert ("cache_items_count", (("layer", "redis"),)) not in samples
        assert ("cache_size_bytes", (("layer", "disk"),)) not in samples
    serve(app, REQUESTS)
    assert_all_counted(registry, 2 * REQUESTS)
    errors = registry.get_sample_value(
        "flask_appmetrics_internal_errors_total", {"component": "scrape_value"}
    )
    assert errors is not None
    assert errors >= 3 * 4  # four bad callables, three scrapes (and our own collects)
    assert any("scrape-time value" in r.getMessage() for r in caplog.records)


# -- the app's own signal receivers --------------------------------------------------------


def test_an_app_receiver_that_raises_on_our_signals_breaks_nothing(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = FlaskMetrics(registry=registry)
    calls: list[str] = []

    def audit(sender: Flask, **payload: Any) -> None:
        calls.append(str(payload))
        raise RuntimeError("the app's audit receiver is broken")

    # Connected before the extension's receivers and after them, for any sender.
    signals.cache_event.connect(audit, weak=False)
    signals.gemini_call.connect(audit, weak=False)
    try:
        app = fault_app(metrics)
        late: list[bool] = []

        def late_audit(sender: Flask, **payload: Any) -> None:
            late.append(True)
            raise ValueError("another broken receiver")

        signals.cache_event.connect(late_audit, sender=app, weak=False)
        try:
            serve(app, REQUESTS)  # record_cache_event inside each request
            with app.app_context():
                record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens=5, duration=0.1)
        finally:
            signals.cache_event.disconnect(late_audit)
    finally:
        signals.cache_event.disconnect(audit)
        signals.gemini_call.disconnect(audit)

    assert len(calls) == REQUESTS + 1  # the app's receivers ran, every time
    assert len(late) == REQUESTS
    scrape(app)
    assert_all_counted(registry, REQUESTS)  # ours ran too, every time
    calls_total = registry.get_sample_value(
        "gemini_api_calls_total",
        {"endpoint": "/api/generate", "model": "gemini-1.5-flash", "status": "success"},
    )
    assert calls_total == 1
    assert any("receiver" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert (
        registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "signal_receiver"}
        )
        == 2 * REQUESTS + 1
    )


# -- scrapes mid-response and during traffic -----------------------------------------------


def test_a_scrape_in_the_middle_of_a_streamed_response(registry: CollectorRegistry) -> None:
    metrics = FlaskMetrics(registry=registry)
    app = fault_app(metrics)
    chunks_sent = threading.Event()
    finish = threading.Event()

    @app.get("/slow-stream")
    def slow_stream() -> Response:
        def body() -> Iterator[str]:
            yield "first"
            chunks_sent.set()
            finish.wait(10)
            yield "last"

        return Response(stream_with_context(body()))

    result: list[tuple[str, bytes]] = []
    client = threading.Thread(
        target=lambda: result.append(respond(app, environ_for("GET", "/slow-stream")))
    )
    client.start()
    try:
        assert chunks_sent.wait(10)
        samples = scrape(app)  # while the body is half sent
        key = ("http_requests_in_progress", (("endpoint", "/slow-stream"), ("method", "GET")))
        assert samples[key] == 1
        serve(app, REQUESTS)
    finally:
        finish.set()
        client.join(10)
    assert not client.is_alive()
    assert result[0] == ("200 OK", b"firstlast")
    samples = scrape(app)
    key = ("http_requests_in_progress", (("endpoint", "/slow-stream"), ("method", "GET")))
    assert samples[key] == 0
    stream = {"method": "GET", "endpoint": "/slow-stream", "status": "200"}
    assert registry.get_sample_value("http_requests_total", stream) == 1
    assert_all_counted(registry, REQUESTS)


def test_scrapes_during_heavy_traffic_see_monotonic_counts(registry: CollectorRegistry) -> None:
    # The scrape sees the counts move, never go back, and never blocks the traffic.
    app = fault_app(FlaskMetrics(registry=registry))
    stop = threading.Event()
    errors: list[BaseException] = []
    sent = [0] * 4

    def traffic(k: int) -> None:
        try:
            while not stop.is_set() and sent[k] < 2_000:
                assert get(app, f"/work/{sent[k]}")[0] == 200
                sent[k] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=traffic, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    seen: list[float] = []
    key = (
        "http_requests_total",
        (("endpoint", "/work/<int:n>"), ("method", "GET"), ("status", "200")),
    )
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        seen.append(scrape(app).get(key, 0.0))
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert seen == sorted(seen)
    assert len(seen) > 1
    labels = dict(key[1])
    assert registry.get_sample_value("http_requests_total", labels) == sum(sent)
