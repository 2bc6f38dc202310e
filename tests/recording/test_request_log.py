"""The request log: requests are recorded as appends and folded into the HTTP families and
the health windows when those are read. Whatever the threads, a read sees every request
that finished before it began, in-progress is exact while requests are in flight, users
count once, and the log stays bounded with nobody reading."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from flask import Flask, session
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, get_health_status
from flask_appmetrics.recording.request_log import FOLD_SIZE, RequestLog
from tests.support.internal_errors import assert_no_internal_error
from tests.support.threads import Threads
from tests.support.traffic import environ_for, respond

THREADS = 8
PER_THREAD = 300
JOIN_SECONDS = 120.0
ITEMS = {"method": "GET", "endpoint": "/items/<int:n>"}


def _app(registry: CollectorRegistry, **config: Any) -> Flask:
    app = Flask("logged")
    app.log_exception = lambda exc_info: None  # type: ignore[method-assign]
    app.config.update(config)
    hold = threading.Event()
    app.config["TEST_HOLD"] = hold
    entered = threading.Semaphore(0)
    app.config["TEST_ENTERED"] = entered

    @app.get("/items/<int:n>")
    def item(n: int) -> str:
        if n % 10 == 9:
            raise RuntimeError("planned")
        return "ok"

    @app.get("/hold")
    def held() -> str:
        entered.release()
        hold.wait(JOIN_SECONDS)
        return "held"

    FlaskMetrics(app, registry=registry)
    return app


def _log(app: Flask) -> RequestLog:
    state = FlaskMetrics.state(app)
    assert state is not None
    return state.instrumentation.log


def _in_threads(work: Any, count: int = THREADS) -> None:
    threads = Threads()
    for t in range(count):
        threads.start(lambda t=t: work(t), f"requests-{t}")
    assert not threads.join(JOIN_SECONDS)
    assert not threads.errors, threads.errors


def _send(app: Flask, t: int, headers: dict[str, str] | None = None) -> None:
    for i in range(PER_THREAD):
        status, _ = respond(app, environ_for("GET", f"/items/{i}", headers=headers))
        assert status[:3] == ("500" if i % 10 == 9 else "200")


def test_a_scrape_sees_every_request_finished_before_it(registry: CollectorRegistry) -> None:
    app = _app(registry)
    _in_threads(lambda t: _send(app, t))
    # Nothing read the metrics meanwhile: this collection folds what the log holds.
    n = THREADS * PER_THREAD
    failed = n // 10
    assert registry.get_sample_value("http_requests_total", {**ITEMS, "status": "200"}) == (
        n - failed
    )
    assert registry.get_sample_value("http_requests_total", {**ITEMS, "status": "500"}) == failed
    assert registry.get_sample_value("http_request_duration_seconds_count", ITEMS) == n
    inf = registry.get_sample_value("http_request_duration_seconds_bucket", {**ITEMS, "le": "+Inf"})
    assert inf == n
    assert registry.get_sample_value("http_requests_in_progress", ITEMS) == 0
    assert_no_internal_error(registry)


def test_every_scrape_during_the_load_sees_at_least_what_had_finished(
    registry: CollectorRegistry,
) -> None:
    app = _app(registry)
    finished = [0] * THREADS
    stop = threading.Event()
    behind: list[tuple[float, int]] = []

    def send(t: int) -> None:
        for i in range(PER_THREAD):
            respond(app, environ_for("GET", f"/items/{10 * i}"))
            finished[t] += 1

    def scrape() -> None:
        while not stop.is_set():
            done = sum(finished)  # read before the scrape begins
            seen = registry.get_sample_value("http_request_duration_seconds_count", ITEMS) or 0
            if seen < done:
                behind.append((seen, done))

    scraper = Threads()
    scraper.start(scrape, "scraper")
    _in_threads(send)
    stop.set()
    assert not scraper.join(JOIN_SECONDS)
    assert not scraper.errors, scraper.errors
    assert behind == []
    assert registry.get_sample_value("http_request_duration_seconds_count", ITEMS) == (
        THREADS * PER_THREAD
    )


def test_in_progress_is_exact_while_requests_are_in_flight(registry: CollectorRegistry) -> None:
    app = _app(registry)
    hold: threading.Event = app.config["TEST_HOLD"]
    entered: threading.Semaphore = app.config["TEST_ENTERED"]
    labels = {"method": "GET", "endpoint": "/hold"}
    waiting = Threads()
    for t in range(5):
        waiting.start(lambda: respond(app, environ_for("GET", "/hold")), f"hold-{t}")
    for _ in range(5):
        assert entered.acquire(timeout=JOIN_SECONDS)
    _in_threads(lambda t: _send(app, t), 2)  # other requests come and go meanwhile
    assert registry.get_sample_value("http_requests_in_progress", labels) == 5
    assert registry.get_sample_value("http_requests_in_progress", ITEMS) == 0
    hold.set()
    assert not waiting.join(JOIN_SECONDS)
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "200"}) == 5


def test_the_log_stays_bounded_with_nobody_reading(registry: CollectorRegistry) -> None:
    app = _app(registry)
    log = _log(app)
    most = 0
    for i in range(4 * FOLD_SIZE):
        respond(app, environ_for("GET", f"/items/{10 * i}", headers={"User-Agent": f"ua-{i}"}))
        most = max(most, log.held())
    # A request logs its start, its duration, its end and its user: folded once a route's
    # log reaches FOLD_SIZE (the latest durations are kept apart, at most the latency
    # window's 100). Never folded, the log would hold 16 x FOLD_SIZE by now.
    assert most <= 4 * FOLD_SIZE + 100
    total = registry.get_sample_value("http_requests_total", {**ITEMS, "status": "200"})
    assert total == 4 * FOLD_SIZE
    assert log.held() == 0


def test_health_windows_match_the_requests(registry: CollectorRegistry) -> None:
    n = THREADS * PER_THREAD
    app = _app(registry, APPMETRICS_HEALTH_LATENCY_WINDOW=n)
    _in_threads(lambda t: _send(app, t))
    with app.app_context():
        health = get_health_status()
    assert health["recent_requests_5min"] == n
    assert health["recent_errors_5min"] == n // 10
    assert health["latency_samples"] == n
    # Every duration the histogram summed is in the latency window.
    state = FlaskMetrics.state(app)
    assert state is not None
    ring = state.health.latency.recent()  # type: ignore[attr-defined]
    total = registry.get_sample_value("http_request_duration_seconds_sum", ITEMS)
    assert total is not None
    assert math.isclose(math.fsum(ring), total, rel_tol=1e-9)


def test_a_user_is_counted_once_however_many_requests_and_threads(
    registry: CollectorRegistry,
) -> None:
    app = _app(registry)
    _in_threads(lambda t: _send(app, t, {"Authorization": "Bearer same"}))
    _in_threads(lambda t: _send(app, t, {"Authorization": f"Bearer user-{t % 3}"}), 6)
    with app.app_context():
        assert get_health_status()["concurrent_users"] == 4
    assert registry.get_sample_value("concurrent_users") == 4


def test_a_client_is_one_user_whether_its_session_holds_something(
    registry: CollectorRegistry,
) -> None:
    # An empty session: the identity is kept as a key on the request path and made text
    # when the log is folded; a session holding something (not a user): made text at once.
    # Both are the same client.
    app = _app(registry, SECRET_KEY="test")

    @app.get("/visit")
    def visit() -> str:
        session["visits"] = session.get("visits", 0) + 1
        return "visited"

    agent = {"User-Agent": "browser"}
    for i in range(3):
        respond(app, environ_for("GET", f"/items/{10 * i}", headers=agent))
        respond(app, environ_for("GET", "/visit", headers=agent))
    respond(app, environ_for("GET", "/items/0", headers={"User-Agent": "other"}))
    with app.app_context():
        assert get_health_status()["concurrent_users"] == 2


@pytest.mark.parametrize("reader", ["scrape", "health"])
def test_the_first_request_is_folded_at_once_and_reads_fold_the_rest(
    registry: CollectorRegistry, reader: str
) -> None:
    app = _app(registry)
    log = _log(app)
    respond(app, environ_for("GET", "/items/0"))
    assert log.held() == 0
    for i in range(1, 5):
        respond(app, environ_for("GET", f"/items/{10 * i}"))
    assert log.held() > 0
    if reader == "scrape":
        assert registry.get_sample_value("http_request_duration_seconds_count", ITEMS) == 5
    else:
        with app.app_context():
            assert get_health_status()["recent_requests_5min"] == 5
    assert log.held() == 0
