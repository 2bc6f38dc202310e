"""Soak: a million requests through one instrumented app, in one process.

Requests go straight through the WSGI callable (no socket, no test client) in a fixed
mix: per 20 requests, 16 ``GET /items/<id>`` (200), 2 ``POST /echo`` (200), 1 unmatched
URL (404) and 1 view that raises (500); every 10,000 requests ``/metrics`` and
``/api/health`` are scraped. After each 100,000-request slice it prints the cost per
request of that slice, the RSS (``VmRSS`` of ``/proc/self/status`` after a full GC) and its
growth since the end of the first slice (the warm-up). At the end it checks that nothing
was lost:

* ``http_requests_total`` sums to the requests sent (scrapes included);
* ``application_errors_total`` equals the 500s sent;
* the health window (``APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS`` set to a day for the run,
  so that every request is inside it) holds exactly the requests and errors sent, and the
  latency ring exactly its 100 samples;
* ``flask_appmetrics_internal_errors_total`` is absent (no failure).

The run is bounded by ``--requests`` and ``--max-seconds``. Exit status 1 if a count is
off or memory grew by more than ``--rss-slack-mib`` after the warm-up.

    python benchmarks/soak.py [--requests 1000000] [--max-seconds 1800]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from flask_appmetrics import FlaskMetrics, get_health_status  # noqa: E402
from tests.support.traffic import rss_bytes  # noqa: E402

SLICE = 100_000
SCRAPE_EVERY = 10_000
MIB = 2**20


def soak_app(registry: CollectorRegistry) -> Flask:
    app = Flask("soak")
    # Thousands of tracebacks on stderr would measure the terminal, not the extension.
    app.log_exception = lambda exc_info: None  # type: ignore[method-assign]
    app.config["APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS"] = 86_400

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/echo")
    def echo() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("soak")

    FlaskMetrics(registry=registry).init_app(app)
    return app


def environ(method: str, path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "soak",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def call(app: Callable[..., Iterable[bytes]], env: dict[str, Any]) -> str:
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    body = app(env, start_response)
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return status[0]


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.errors = 0
        self.own = 0  # scrapes of /metrics and /api/health: counted, not in the health window


def one(app: Flask, i: int, tally: Tally) -> None:
    k = i % 20
    if k < 16:
        call(app, environ("GET", f"/items/{i}"))
    elif k < 18:
        call(app, environ("POST", "/echo"))
    elif k == 18:
        call(app, environ("GET", f"/missing/{i}"))
    else:
        call(app, environ("GET", "/boom"))
        tally.errors += 1
    tally.sent += 1
    if tally.sent % SCRAPE_EVERY == 0:
        for path in ("/metrics", "/api/health"):
            call(app, environ("GET", path))
            tally.own += 1


def total(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--rss-slack-mib", type=float, default=2.0)
    args = parser.parse_args()

    registry = CollectorRegistry()
    app = soak_app(registry)
    tally = Tally()
    started = time.perf_counter()
    warm_rss: int | None = None
    costs: list[float] = []
    print("   requests   us/request   RSS MiB   growth since warm-up MiB")
    while tally.sent < args.requests:
        n = min(SLICE, args.requests - tally.sent)
        first = tally.sent
        t0 = time.perf_counter()
        for i in range(first, first + n):
            one(app, i, tally)
        cost = (time.perf_counter() - t0) / n * 1e6
        rss = rss_bytes()
        if warm_rss is None:
            warm_rss = rss
        else:
            costs.append(cost)
        print(
            f"  {tally.sent:>9}   {cost:>10.1f}   {rss / MIB:>7.1f}"
            f"   {(rss - warm_rss) / MIB:>10.2f}",
            flush=True,
        )
        if time.perf_counter() - started > args.max_seconds:
            print(f"stopped at the time bound ({args.max_seconds:.0f} s)")
            break
    assert warm_rss is not None
    growth = (rss_bytes() - warm_rss) / MIB

    with app.app_context():
        health = get_health_status()
    counted = total(registry, "http_requests_total")
    checks = {
        "http_requests_total == requests sent (scrapes included)": (
            counted,
            tally.sent + tally.own,
        ),
        "application_errors_total == 500s sent": (
            total(registry, "application_errors_total"),
            tally.errors,
        ),
        "health recent_requests == requests sent": (health["recent_requests_5min"], tally.sent),
        "health recent_errors == 500s sent": (health["recent_errors_5min"], tally.errors),
        "health latency_samples == 100": (health["latency_samples"], 100),
        "flask_appmetrics_internal_errors_total == 0": (
            total(registry, "flask_appmetrics_internal_errors_total"),
            0,
        ),
    }
    ok = growth <= args.rss_slack_mib
    elapsed = time.perf_counter() - started
    print(f"\n{tally.sent} requests (+{tally.own} scrapes) in {elapsed:.0f} s")
    print(f"RSS growth after the warm-up slice: {growth:.2f} MiB (slack {args.rss_slack_mib} MiB)")
    if costs:
        print(
            f"cost per request after warm-up: median {statistics.median(costs):.1f} us, "
            f"first {costs[0]:.1f} us, last {costs[-1]:.1f} us "
            f"(last/first {costs[-1] / costs[0]:.2f})"
        )
    for what, (got, expected) in checks.items():
        good = got == expected
        ok = ok and good
        print(f"{'ok ' if good else 'BAD'} {what}: {got:.0f} (expected {expected:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
