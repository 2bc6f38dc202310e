"""Cost of the health windows: reading health after few or many requests, and recording.

1. ``get_health_status()`` on an app whose windows recorded 100 requests, and on one whose
   windows recorded 1,000,000 (fed straight to the monitor: a million requests through
   Flask would take minutes and measure Flask). Constant cost is the point of the ring
   buffer and the time buckets: the ratio should be close to 1.
2. What recording adds per request: the monitor's observer and user hook on their own
   (microseconds per call), and whole requests through the WSGI callable for bare Flask,
   flask-appmetrics with health recording, flask-appmetrics with health recording turned
   off, and prometheus_flask_exporter.

Variants run in interleaved rounds (a noisy neighbour slows each alike); medians printed.

    python benchmarks/health_window.py [--rounds 15] [--calls 2000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.globals import request_ctx

# Shared with the overhead benchmark: the same app, driven the same way.
from overhead import run_round, trivial_app
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder

from flask_appmetrics import FlaskMetrics, get_health_status
from flask_appmetrics.health.monitor import HealthMonitor


def app_with_metrics() -> Flask:
    app = trivial_app()
    FlaskMetrics(app, registry=CollectorRegistry())
    return app


def monitor_of(app: Flask) -> HealthMonitor:
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.health is not None
    return state.health


def feed(app: Flask, requests: int) -> None:
    """Record *requests* finished requests (1% errors) and as many user sightings."""
    monitor = monitor_of(app)
    for i in range(requests):
        monitor.observe(0.001 + (i % 100) * 1e-4, 500 if i % 100 == 0 else 200)
        monitor.users.touch(f"user-{i}")


def health_without_recording() -> Flask:
    app = app_with_metrics()
    state = FlaskMetrics.state(app)
    assert state is not None
    state.instrumentation.observer = None
    state.instrumentation.user_observer = None
    return app


def peer() -> Flask:
    from prometheus_flask_exporter import PrometheusMetrics

    app = trivial_app()
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


def per_call(func: Callable[[], Any], calls: int) -> float:
    """Microseconds per call of *func* over *calls* calls."""
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls * 1e6


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def read_cost(rounds: int, calls: int) -> None:
    few, many = app_with_metrics(), app_with_metrics()
    feed(few, 100)
    started = time.perf_counter()
    feed(many, 1_000_000)
    fed = time.perf_counter() - started

    def status_of(app: Flask) -> Callable[[], float]:
        def measure() -> float:
            with app.app_context():
                return per_call(get_health_status, calls)

        return measure

    median = interleave({"100": status_of(few), "1,000,000": status_of(many)}, rounds)
    with many.app_context():
        seen = get_health_status()
    print("1. get_health_status() after N recorded requests")
    print(f"   (fed 1,000,000 requests and user sightings in {fed:.1f} s)")
    print(f"   {'recorded':>12} {'us/call':>9}")
    for name, value in median.items():
        print(f"   {name:>12} {value:9.2f}")
    print(f"   ratio 1,000,000 / 100 = {median['1,000,000'] / median['100']:.2f}  (target ~1)")
    print(
        f"   windows after 1,000,000: {seen['recent_requests_5min']} requests, "
        f"{seen['recent_errors_5min']} errors (exact), {seen['latency_samples']} latencies, "
        f"{seen['concurrent_users']} users (capped)"
    )


def record_cost(rounds: int, calls: int, requests: int) -> None:
    app = app_with_metrics()
    monitor = monitor_of(app)
    environ = EnvironBuilder(path="/items/3", headers=[("User-Agent", "bench")]).get_environ()

    def observe() -> float:
        return per_call(lambda: monitor.observe(0.01, 200), calls)

    def note_user() -> float:
        with app.test_request_context("/items/3", headers={"User-Agent": "bench"}):
            ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
            return per_call(lambda: monitor.note_user(ctx), calls)

    micro = interleave({"observe()": observe, "user hook": note_user}, rounds)
    print()
    print("2a. recording, per call")
    for name, value in micro.items():
        print(f"   {name:12} {value:7.2f} us")

    apps = {
        "bare flask": trivial_app(),
        "appmetrics, health off": health_without_recording(),
        "appmetrics": app_with_metrics(),
        "prometheus_flask_exporter": peer(),
    }
    for each in apps.values():
        run_round(each, environ, 200)

    def round_of(each: Flask) -> Callable[[], float]:
        return lambda: run_round(each, environ, requests) * 1e6

    median = interleave({name: round_of(each) for name, each in apps.items()}, rounds)
    bare = median["bare flask"]
    print()
    print(f"2b. whole requests, {rounds} interleaved rounds x {requests}, median us/request")
    print(f"   {'variant':28} {'us/req':>8} {'added us':>9}")
    for name, value in median.items():
        print(f"   {name:28} {value:8.2f} {value - bare:9.2f}")
    health = median["appmetrics"] - median["appmetrics, health off"]
    print(f"   health recording adds {health:.2f} us/request (noise is a few us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    read_cost(args.rounds, args.calls)
    record_cost(args.rounds, args.calls, args.requests)


if __name__ == "__main__":
    main()
