"""Many threads recording requests and domain events while ``/metrics`` and
``/api/health`` are scraped: every count exact at the end, no deadlock, no exception.

The request threads go through the WSGI callable (as a threaded server's workers do);
worker threads outside any request record domain events through the module helpers (the
most recently initialised app); scraper threads parse every ``/metrics`` page and every
health body while the counts move. Every thread is joined with a timeout, so a deadlock
fails the test instead of hanging it. Across gunicorn worker processes the same exactness
is checked by ``tests/system/test_gunicorn_concurrency.py`` (three workers, client and
scraper threads) and by ``tests/system/test_gunicorn.py`` (multiprocess sums, dead workers
included).
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import (
    FlaskMetrics,
    get_health_status,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
)
from tests.support.internal_errors import assert_no_internal_error
from tests.support.threads import Threads
from tests.support.traffic import environ_for, respond

REQUEST_THREADS = 8
REQUESTS_PER_THREAD = 250
EVENT_THREADS = 4
EVENTS_PER_THREAD = 500
JOIN_SECONDS = 120.0
TOKENS = 7


def concurrent_app(registry: CollectorRegistry) -> Flask:
    app = Flask("concurrent")
    app.log_exception = lambda exc_info: None  # type: ignore[method-assign]
    app.config["APPMETRICS_GEMINI_ENDPOINTS"] = ("/work", "/worker")
    metrics = FlaskMetrics(registry=registry)
    metrics.init_app(app)
    done = metrics.counter("jobs_done_total", "Jobs done", ["kind"], allowed={"kind": ["a", "b"]})

    @app.get("/work/<int:n>")
    def work(n: int) -> str:
        # Inside the request: the helpers record into this app.
        record_cache_event(hit=n % 2 == 0)
        record_gemini_usage("/work", "gemini-1.5-flash", tokens=TOKENS, duration=0.01)
        record_circuit_breaker_event("gemini", "success")
        done.labels(kind="a").inc()
        return "ok"

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("planned")

    return app


def _sum(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@dataclass
class Load:
    """What :func:`run_load` sent."""

    requests: int = 0
    failures: int = 0
    events: int = 0
    scrapes: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "health": 0})


def run_load(app: Flask) -> Load:
    """Request, event and scraper threads at once; every thread joined with a timeout."""
    load = Load()
    stop = threading.Event()
    statuses: list[str] = []

    def send_requests(thread: int) -> None:
        for i in range(REQUESTS_PER_THREAD):
            status, _ = respond(app, environ_for("GET", f"/work/{thread * 10_000 + i}"))
            statuses.append(status)
            if i % 50 == 0:
                assert respond(app, environ_for("GET", "/fail"))[0].startswith("500")

    def events() -> None:
        # Outside any request or app context: the helpers find the latest app.
        for i in range(EVENTS_PER_THREAD):
            record_cache_event(hit=i % 2 == 0, operation="get", layer="memory")
            record_gemini_usage("/worker", "gemini-1.5-flash", tokens=TOKENS, duration=0.02)
            record_circuit_breaker_event("gemini", "failure")

    def scrape_metrics() -> None:
        while not stop.is_set():
            status, body = respond(app, environ_for("GET", "/metrics"))
            assert status.startswith("200"), status
            families = list(text_string_to_metric_families(body.decode("utf-8")))
            assert any(f.name == "http_requests" for f in families)
            load.scrapes["metrics"] += 1

    def scrape_health() -> None:
        while not stop.is_set():
            status, body = respond(app, environ_for("GET", "/api/health"))
            assert status[:3] in {"200", "503"}, status
            assert json.loads(body)["status"] in {"healthy", "degraded", "unhealthy"}
            load.scrapes["health"] += 1

    workers, scrapers = Threads(), Threads()
    for t in range(REQUEST_THREADS):
        workers.start(functools.partial(send_requests, t), f"requests-{t}")
    for t in range(EVENT_THREADS):
        workers.start(events, f"events-{t}")
    scrapers.start(scrape_metrics, "scrape-metrics")
    scrapers.start(scrape_health, "scrape-health")

    stuck = workers.join(JOIN_SECONDS)
    stop.set()
    stuck += scrapers.join(JOIN_SECONDS)
    assert not stuck, f"deadlocked: {stuck}"
    assert not workers.errors, workers.errors
    assert not scrapers.errors, scrapers.errors
    assert all(s.startswith("200") for s in statuses)
    load.requests = len(statuses)
    load.failures = REQUEST_THREADS * len(range(0, REQUESTS_PER_THREAD, 50))
    load.events = EVENT_THREADS * EVENTS_PER_THREAD
    return load


def test_counts_are_exact_under_concurrent_recording_and_scraping(
    registry: CollectorRegistry,
) -> None:
    app = concurrent_app(registry)
    load = run_load(app)
    assert load.requests == REQUEST_THREADS * REQUESTS_PER_THREAD
    assert load.scrapes["metrics"] > 0
    assert load.scrapes["health"] > 0
    n, failures, events = load.requests, load.failures, load.events

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    # HTTP: every request once, nothing in progress, the scrapes counted too.
    work = {"method": "GET", "endpoint": "/work/<int:n>"}
    assert value("http_requests_total", **work, status="200") == n
    assert value("http_request_duration_seconds_count", **work) == n
    assert value("http_requests_total", method="GET", endpoint="/fail", status="500") == failures
    assert value("application_errors_total", endpoint="/fail", error_type="RuntimeError") == (
        failures
    )
    assert (
        value("http_requests_total", method="GET", endpoint="/metrics", status="200")
        == (load.scrapes["metrics"])
    )
    assert _sum(registry, "http_requests_in_progress") == 0
    # Domain events: from requests and from the worker threads.
    assert value("cache_operations_total", operation="get", result="hit") == (n + events) / 2
    assert value("cache_operations_total", operation="get", result="miss") == (n + events) / 2
    assert value("cache_hit_rate") == 0.5
    calls = {"model": "gemini-1.5-flash", "status": "success"}
    assert value("gemini_api_calls_total", endpoint="/work", **calls) == n
    assert value("gemini_api_calls_total", endpoint="/worker", **calls) == events
    assert _sum(registry, "gemini_api_tokens_total") == TOKENS * (n + events)
    assert value("circuit_breaker_successes_total", service="gemini") == n
    assert value("circuit_breaker_failures_total", service="gemini") == events
    assert value("jobs_done_total", kind="a") == n
    assert_no_internal_error(registry)
    # Health: the window holds exactly the app's requests (scrapes excluded).
    with app.app_context():
        health: dict[str, Any] = get_health_status()
    assert health["recent_requests_5min"] == n + failures
    assert health["recent_errors_5min"] == failures
    assert health["latency_samples"] == app.config["APPMETRICS_HEALTH_LATENCY_WINDOW"]
