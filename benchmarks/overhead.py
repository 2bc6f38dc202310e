"""Per-request overhead of flask-appmetrics against bare Flask and the peer.

Runs one trivial app several ways in one process, in interleaved rounds whose order turns
each round (so a noisy neighbour slows every variant alike), and prints the median
microseconds per request, the overhead each variant adds over bare Flask, and the ratios
the project targets, for
flask-appmetrics as installed (health windows and user tracking on):

* its overhead at most a quarter of ``prometheus_flask_exporter``'s;
* its overhead no more than ``floor``'s (hand-written hooks updating pre-bound
  prometheus_client children: what the obvious instrumentation with these metrics costs).

Many short rounds (101 of 500 requests, a few tens of milliseconds each) rather than a few
long ones: each variant's run is then paired with bare Flask's a fraction of a second
apart, and the median of many such differences moves little when the machine's
neighbours come and go.

Requests go straight through the WSGI callable, without a test client or a socket, and
every body is closed as a server closes it, so what is measured is the app and its
instrumentation.

``--instructions`` counts CPU instructions per request instead, under valgrind's callgrind
(each variant in a process of its own, twice, with different request counts and the cyclic
collector off: the difference is the requests' alone, without start-up). Instruction counts
do not depend on what else the machine runs; they are not time (a lock or a cache miss
costs more than its instructions), so they complement the timed rounds rather than replace
them.

    python benchmarks/overhead.py [--rounds 101] [--requests 500]
    python benchmarks/overhead.py --instructions [--requests 2000]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import statistics
import subprocess
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
from werkzeug.test import EnvironBuilder  # noqa: E402

from benchmarks.hand_written import instrument_by_hand  # noqa: E402
from flask_appmetrics import FlaskMetrics  # noqa: E402

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
    instrument_by_hand(app, CollectorRegistry())
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
    instrumentation.log.health = None
    instrumentation.identify = None
    instrumentation.log.route_observer = None
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


def instructions(name: str, requests: int) -> float:
    """Instructions per request of variant *name*, counted by callgrind."""

    def count(n: int) -> int:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--one",
            name,
            "--requests",
            str(n),
        ]
        # A fixed hash seed: dictionaries then probe alike in every run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        assert found is not None, run.stderr[-2000:]
        return int(found.group(1))

    return (count(2 * requests) - count(requests)) / requests


def run_one(name: str, requests: int) -> None:
    """One variant alone (what ``--instructions`` runs under callgrind)."""
    app = VARIANTS[name]()
    environ = EnvironBuilder(path="/items/3").get_environ()
    run_round(app, environ, 200)
    # A collection falling in one of the two counted runs and not in the other would count
    # as the requests' instructions.
    gc.collect()
    gc.disable()
    run_round(app, environ, requests)


def report(per_request: dict[str, float], unit: str, added: dict[str, float] | None = None) -> None:
    """Print each variant's cost and what it adds to bare Flask, and the target ratios.

    :param added: what each variant adds (default: the difference of *per_request*'s).
    """
    if added is None:
        added = {name: per_request[name] - per_request["bare"] for name in per_request}
    print(f"{'variant':28} {unit:>10} {'added':>10}")
    for name, value in per_request.items():
        print(f"{name:28} {value:10.2f} {added[name]:10.2f}")
    theirs, least = added["prometheus_flask_exporter"], added["floor"]
    print()
    for name in ("appmetrics", "appmetrics_metrics_only"):
        ours = added[name]
        print(f"{name}: overhead / peer's = {ours / theirs:.2f} (target <= 0.25), ", end="")
        print(f"/ floor's = {ours / least:.2f} (target <= 1.00)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    parser.add_argument("--one", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.requests)
        return
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("--instructions needs valgrind (apt-get install valgrind)")
        counted = {name: instructions(name, args.requests) for name in VARIANTS}
        print(f"instructions per request (callgrind, {args.requests} requests)")
        report({name: value / 1000 for name, value in counted.items()}, "k instr")
        return

    environ = EnvironBuilder(path="/items/3").get_environ()
    apps = {name: build() for name, build in VARIANTS.items()}
    for app in apps.values():  # warm up: routes, label children, code paths
        run_round(app, environ, 200)
    # What every variant keeps (modules, apps, registries) out of the collector's way: a
    # full collection scanning it lands in whichever run it happens to fall, adding
    # microseconds per request to that variant alone. Each run starts with a collection
    # (untimed) and pays for the garbage it makes itself.
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for round_number in range(args.rounds):
        # The order turns each round: no variant always runs first, or after the same one.
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            samples[name].append(run_round(apps[name], environ, args.requests) * 1e6)

    median = {name: statistics.median(values) for name, values in samples.items()}
    # What a variant adds, paired with bare Flask's run of the same round (a second or
    # so apart): the median of those differences moves less with the machine's load than
    # the difference of the medians.
    bare = samples["bare"]
    added = {
        name: statistics.median(v - b for v, b in zip(values, bare, strict=True))
        for name, values in samples.items()
    }
    print(f"{args.rounds} interleaved rounds x {args.requests} requests, median us/request")
    print("(added: the median over rounds of the variant's time minus bare Flask's)")
    report(median, "us/req", added)


if __name__ == "__main__":
    main()
