"""Memory, series and ``/metrics`` size under hostile traffic, against the peer.

Sends the same reproducible stream of hostile requests (random paths: mostly scanners'
404s, unknown methods, random headers, a new user identity on almost every request; see
``tests/support/traffic.py``) through three apps, each in its own process so that RSS is its own:

* ``bare``: Flask alone (the floor);
* ``appmetrics``: flask-appmetrics with defaults;
* ``peer``: prometheus_flask_exporter with defaults (``group_by="path"``: the raw path).

Each run warms up (every method x route x status once, then 12,000 hostile requests, which
also fills flask-appmetrics' bounded users window), then sends ``--requests`` more in
slices of 10,000, printing the RSS growth (``VmRSS`` of ``/proc/self/status``, after a full
GC), the number of series and, at the end, the size of ``/metrics``. The peer's run is
bounded by ``--peer-requests`` and ``--peer-seconds`` (its page grows without limit).

    python benchmarks/hostile_traffic.py [--requests 100000] [--peer-requests 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from tests.support.traffic import (  # noqa: E402
    HostileTraffic,
    drive,
    environ_for,
    hostile,
    hostile_app,
    rss_bytes,
    scrape,
)

SLICE = 10_000
WARM_UP = 12_000
MIB = 2**20


def build(variant: str) -> tuple[Flask, CollectorRegistry | None]:
    app = hostile_app(variant)
    if variant == "bare":
        return app, None
    registry = CollectorRegistry()
    if variant == "appmetrics":
        from flask_appmetrics import FlaskMetrics

        FlaskMetrics(registry=registry).init_app(app)
    elif variant == "peer":
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app, registry=registry)
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    return app, registry


def count_series(registry: CollectorRegistry | None) -> int:
    if registry is None:
        return 0
    return sum(len(family.samples) for family in registry.collect())


def run_variant(variant: str, requests: int, seconds: float) -> dict[str, Any]:
    """Run one variant in this process; return its figures."""
    app, registry = build(variant)
    traffic = HostileTraffic(seed=2024)
    drive(app, traffic.every_combination())
    drive(app, hostile(traffic, WARM_UP))
    base_rss = rss_bytes()
    base_series = count_series(registry)
    slices: list[dict[str, float]] = []
    sent = 0
    started = time.perf_counter()
    while sent < requests:
        n = min(SLICE, requests - sent)
        t0 = time.perf_counter()
        drive(app, hostile(traffic, n))
        elapsed = time.perf_counter() - t0
        sent += n
        slices.append(
            {
                "sent": sent,
                "rss_growth_mib": (rss_bytes() - base_rss) / MIB,
                "series": count_series(registry),
                "us_per_request": elapsed / n * 1e6,
            }
        )
        if time.perf_counter() - started > seconds:
            break
    series_after = count_series(registry)
    traffic_growth = (rss_bytes() - base_rss) / MIB
    # The scrape itself: the peer builds its whole page in memory.
    page = scrape(app) if registry is not None else b""
    return {
        "variant": variant,
        "sent": sent,
        "base_rss_mib": base_rss / MIB,
        "rss_growth_mib": traffic_growth,
        "rss_growth_after_scrape_mib": (rss_bytes() - base_rss) / MIB,
        "series_before": base_series,
        "series_after": series_after,
        "page_mib": len(page) / MIB,
        "slices": slices,
    }


def run_plain_404s(variant: str, requests: int) -> dict[str, Any]:
    """*requests* GETs of distinct unmatched paths (``/missing/<n>``), nothing else: the
    simplest scan, for the figure of the peer's page size."""
    app, registry = build(variant)
    base_rss = rss_bytes()
    drive(app, (environ_for("GET", f"/missing/{i}") for i in range(requests)))
    growth = (rss_bytes() - base_rss) / MIB
    page = scrape(app)
    return {
        "variant": f"{variant} ({requests} plain 404s)",
        "sent": requests,
        "base_rss_mib": base_rss / MIB,
        "rss_growth_mib": growth,
        "rss_growth_after_scrape_mib": (rss_bytes() - base_rss) / MIB,
        "series_before": 0,
        "series_after": count_series(registry),
        "page_mib": len(page) / MIB,
        "slices": [],
    }


def spawn(variant: str, requests: int, seconds: float, *, plain: bool = False) -> dict[str, Any]:
    """Run one variant in a fresh interpreter, so its RSS is its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--requests", str(requests),
         "--peer-seconds", str(seconds), *(["--plain-404s"] if plain else [])],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 900,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--peer-requests", type=int, default=50_000)
    parser.add_argument("--peer-seconds", type=float, default=600.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--plain-404s", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-plain", action="store_true", help="only the plain 404 runs")
    args = parser.parse_args()
    if args.child:
        if args.plain_404s:
            print(json.dumps(run_plain_404s(args.child, args.requests)))
        else:
            print(json.dumps(run_variant(args.child, args.requests, args.peer_seconds)))
        return
    runs = []
    if not args.only_plain:
        runs += [
            spawn("bare", args.requests, args.peer_seconds),
            spawn("appmetrics", args.requests, args.peer_seconds),
            spawn("peer", args.peer_requests, args.peer_seconds),
        ]
    runs += [
        spawn("appmetrics", 50_000, args.peer_seconds, plain=True),
        spawn("peer", 50_000, args.peer_seconds, plain=True),
    ]
    for run in runs:
        print(f"\n{run['variant']}: {run['sent']} hostile requests after warm-up")
        print("    sent   RSS growth MiB    series   us/request")
        for s in run["slices"]:
            print(
                f"  {s['sent']:>7}   {s['rss_growth_mib']:>13.2f}   {s['series']:>8}"
                f"   {s['us_per_request']:>9.1f}"
            )
    print(
        "\nvariant                         requests  RSS at start MiB  RSS growth MiB"
        "  (+ one scrape)  series before->after  /metrics MiB"
    )
    for run in runs:
        print(
            f"{run['variant']:<31} {run['sent']:>8}  {run['base_rss_mib']:>16.1f}"
            f"  {run['rss_growth_mib']:>14.2f}  {run['rss_growth_after_scrape_mib']:>14.2f}"
            f"  {run['series_before']:>8} -> {run['series_after']:<8}"
            f"  {run['page_mib']:>12.2f}"
        )


if __name__ == "__main__":
    main()
