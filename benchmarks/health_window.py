"""Cost of the health windows: reading health after few or many requests, and recording.

1. ``get_health_status()`` on an app that recorded 100 requests, and on one that recorded
   1,000,000, both through the app's request log as requests are (its ``finish``, without
   Flask around it: a million requests through Flask would take minutes and measure
   Flask). The log is folded into the windows by size (every ``FOLD_SIZE`` requests of a
   route) and before every read, and the windows are a ring and time buckets: reading
   costs the same after a million requests as after a hundred (ratio close to 1). Also
   printed: the most a read can cost, one that first folds a full log.
2. What recording adds per request: the log's ``finish`` (its share of the folds
   included) and the user's identity key on their own (microseconds per call), and whole
   requests through the WSGI callable for bare Flask, flask-appmetrics with health
   recording, flask-appmetrics with health recording turned off, and
   prometheus_flask_exporter.

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
from flask_appmetrics.recording.identity import identity_key
from flask_appmetrics.recording.request_log import FOLD_SIZE, RequestLog, Route


def app_with_metrics() -> Flask:
    app = trivial_app()
    FlaskMetrics(app, registry=CollectorRegistry())
    return app


def log_of(app: Flask) -> tuple[RequestLog, Route]:
    """The app's request log and the route of ``/items/<int:item_id>`` (one real request
    makes it)."""
    environ = EnvironBuilder(path="/items/3").get_environ()
    run_round(app, environ, 1)
    state = FlaskMetrics.state(app)
    assert state is not None
    routes = state.instrumentation._routes  # the benchmark's peek at the route table
    return state.instrumentation.log, next(iter(routes.values()))


def feed(app: Flask, requests: int) -> None:
    """Log *requests* finished requests (1% errors), from 100,000 distinct users."""
    log, route = log_of(app)
    finish = log.finish
    started = time.perf_counter()
    for i in range(requests):
        finish(route, started, 500 if i % 100 == 0 else 200, f"user-{i % 100_000}")


def health_without_recording() -> Flask:
    app = app_with_metrics()
    state = FlaskMetrics.state(app)
    assert state is not None
    state.instrumentation.log.health = None
    state.instrumentation.identify = None
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
    print("1. get_health_status() after N requests through the request log")
    print(f"   (logged 1,000,000 requests in {fed:.1f} s)")
    print(f"   {'recorded':>12} {'us/call':>9}")
    for name, value in median.items():
        print(f"   {name:>12} {value:9.2f}")
    print(f"   ratio 1,000,000 / 100 = {median['1,000,000'] / median['100']:.2f}  (target ~1)")
    print(
        f"   windows after 1,000,000: {seen['recent_requests_5min']} requests, "
        f"{seen['recent_errors_5min']} errors (exact), {seen['latency_samples']} latencies, "
        f"{seen['concurrent_users']} users (capped)"
    )
    worst = []
    for _ in range(rounds):
        feed(many, FOLD_SIZE - 1)
        with many.app_context():
            started = time.perf_counter()
            get_health_status()
            worst.append((time.perf_counter() - started) * 1e6)
    print(f"   a read that first folds {FOLD_SIZE - 1} logged requests: ", end="")
    print(f"{statistics.median(worst):.0f} us (the most a read ever folds)")


def record_cost(rounds: int, calls: int, requests: int) -> None:
    app = app_with_metrics()
    environ = EnvironBuilder(path="/items/3", headers=[("User-Agent", "bench")]).get_environ()

    log, route = log_of(app)
    started = time.perf_counter()

    def finish() -> float:
        return per_call(lambda: log.finish(route, started, 200, ("127.0.0.1", "bench")), calls)

    def key() -> float:
        with app.test_request_context("/items/3", headers={"User-Agent": "bench"}):
            ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
            return per_call(lambda: identity_key(ctx), calls)

    micro = interleave({"log finish": finish, "identity key": key}, rounds)
    print()
    print("2a. recording, per call (finish: its share of the folds included)")
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
