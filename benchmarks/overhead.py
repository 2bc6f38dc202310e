"""Per-request overhead of flask-appmetrics against bare Flask and the peer.

Runs one trivial app several ways in one process, in interleaved rounds (so a noisy
neighbour slows every variant alike), and prints the median microseconds per request,
the overhead each variant adds over bare Flask, and the ratios the project targets:

* ``appmetrics`` overhead at most half of ``prometheus_flask_exporter``'s;
* ``appmetrics`` overhead within 1.5x of ``floor`` (hand-written hooks updating pre-bound
  prometheus_client children: the least any instrumentation with these metrics can cost).

Requests go straight through the WSGI callable, without a test client or a socket, so
what is measured is the app and its instrumentation.

    python benchmarks/overhead.py [--rounds 15] [--requests 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from werkzeug.test import EnvironBuilder

from flask_appmetrics import FlaskMetrics

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def trivial_app() -> Flask:
    app = Flask("bench")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return "ok"

    return app


def bare() -> Flask:
    return trivial_app()


def hooks_only() -> Flask:
    app = trivial_app()
    app.before_request(lambda: None)
    app.after_request(lambda response: response)
    return app


def floor() -> Flask:
    """Hand-written instrumentation with children bound once: the floor for these metrics."""
    app = trivial_app()
    registry = CollectorRegistry()
    labels = ("GET", "/items/<int:item_id>")
    total = Counter("req_total", "x", ["method", "endpoint", "status"], registry=registry)
    duration = Histogram("req_seconds", "x", ["method", "endpoint"], registry=registry)
    progress = Gauge("req_in_progress", "x", ["method", "endpoint"], registry=registry)
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

    return app


def appmetrics() -> Flask:
    app = trivial_app()
    FlaskMetrics(app, registry=CollectorRegistry())
    return app


def appmetrics_without_health() -> Flask:
    """flask-appmetrics with the health windows' recording unhooked (not a user setting):
    splits the cost between the metrics and the health windows."""
    app = appmetrics()
    instrumentation = app.extensions["appmetrics"].instrumentation
    instrumentation.observer = None
    instrumentation.route_observer = None
    instrumentation.user_observer = None
    return app


def appmetrics_with_objectives() -> Flask:
    """flask-appmetrics with two service level objectives (availability and latency)
    counting the benchmarked route."""
    app = trivial_app()
    app.config["APPMETRICS_SLOS"] = [{"availability": 0.999, "latency": ("250ms", 0.99)}]
    FlaskMetrics(app, registry=CollectorRegistry())
    return app


def peer() -> Flask:
    from prometheus_flask_exporter import PrometheusMetrics

    app = trivial_app()
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


VARIANTS: dict[str, Callable[[], Flask]] = {
    "bare": bare,
    "hooks_only": hooks_only,
    "floor": floor,
    "appmetrics": appmetrics,
    "appmetrics_metrics_only": appmetrics_without_health,
    "appmetrics_2_objectives": appmetrics_with_objectives,
    "prometheus_flask_exporter": peer,
}


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def run_round(app: WSGIApp, environ: dict[str, Any], requests: int) -> float:
    """Seconds per request over *requests* requests."""
    started = time.perf_counter()
    for _ in range(requests):
        body = app(dict(environ), _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    environ = EnvironBuilder(path="/items/3").get_environ()
    apps = {name: build() for name, build in VARIANTS.items()}
    for app in apps.values():  # warm up: routes, label children, code paths
        run_round(app, environ, 200)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            samples[name].append(run_round(app, environ, args.requests) * 1e6)

    median = {name: statistics.median(values) for name, values in samples.items()}
    added = {name: median[name] - median["bare"] for name in median}
    print(f"{args.rounds} interleaved rounds x {args.requests} requests, median us/request")
    print(f"{'variant':28} {'us/req':>8} {'added us':>9}")
    for name in apps:
        print(f"{name:28} {median[name]:8.2f} {added[name]:9.2f}")
    theirs, least = added["prometheus_flask_exporter"], added["floor"]
    print()
    for name in ("appmetrics", "appmetrics_metrics_only"):
        ours = added[name]
        print(f"{name}: overhead / peer's = {ours / theirs:.2f} (target <= 0.50), ", end="")
        print(f"/ floor's = {ours / least:.2f} (target <= 1.50)")


if __name__ == "__main__":
    main()
