"""Cost of recording a domain event, against direct prometheus_client calls on module-level metrics.

Interleaved rounds (each variant once per round, in turn) so that machine noise hits all of
them alike; prints the median cost per call and its ratio to the baseline.

* cache: ``record_cache_event(hit=True)`` (validated, bounded, through the signal) vs the
  direct ``CACHE_OPERATIONS.labels("get", "hit").inc()``.
* gemini: ``record_gemini_usage(endpoint, model, tokens, duration)`` vs three
  direct updates (calls, tokens, duration).
* flask-caching: ``cache.get(key)`` on an instrumented ``SimpleCache`` vs an
  uninstrumented one.

Run: ``.venv/bin/python benchmarks/domain_helpers.py [--rounds 15] [--calls 20000]``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from time import perf_counter

from flask import Flask
from flask_caching import Cache
from prometheus_client import CollectorRegistry, Counter, Histogram

from flask_appmetrics import FlaskMetrics, record_cache_event, record_gemini_usage
from flask_appmetrics.integrations.caching import instrument_cache


def per_call(function: Callable[[], None], calls: int) -> float:
    start = perf_counter()
    for _ in range(calls):
        function()
    return (perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()

    # Direct: metric objects at module level, updated directly.
    direct = CollectorRegistry()
    cache_ops = Counter("cache_operations_total", "ops", ["operation", "result"], registry=direct)
    calls = Counter("gemini_api_calls_total", "c", ["endpoint", "model", "status"], registry=direct)
    tokens = Counter("gemini_api_tokens_total", "t", ["endpoint", "model"], registry=direct)
    duration = Histogram("gemini_api_duration_seconds", "d", ["endpoint", "model"], registry=direct)

    def direct_cache() -> None:
        cache_ops.labels("get", "hit").inc()

    def direct_gemini() -> None:
        calls.labels("/api/generate", "gemini-1.5-flash", "success").inc()
        tokens.labels("/api/generate", "gemini-1.5-flash").inc(120)
        duration.labels("/api/generate", "gemini-1.5-flash").observe(0.8)

    app = Flask("bench")
    app.config["CACHE_TYPE"] = "SimpleCache"
    FlaskMetrics(app, registry=CollectorRegistry())
    instrumented = Cache(app)
    instrument_cache(instrumented, app)
    plain_app = Flask("plain")
    plain_app.config["CACHE_TYPE"] = "SimpleCache"
    plain = Cache(plain_app)

    def ours_cache() -> None:
        record_cache_event(hit=True)

    def ours_gemini() -> None:
        record_gemini_usage("/api/generate", "gemini-1.5-flash", 120, 0.8)

    with app.app_context():
        instrumented.set("k", "v")
        backend_ours = app.extensions["cache"][instrumented]
    with plain_app.app_context():
        plain.set("k", "v")
        backend_plain = plain_app.extensions["cache"][plain]

    def ours_get() -> None:
        backend_ours.get("k")

    def plain_get() -> None:
        backend_plain.get("k")

    pairs = {
        "cache event": (direct_cache, ours_cache),
        "gemini call": (direct_gemini, ours_gemini),
        "flask-caching get": (plain_get, ours_get),
    }
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
    with app.app_context():
        for _ in range(args.rounds):
            for name, (baseline, ours) in pairs.items():
                results[name][0].append(per_call(baseline, args.calls))
                results[name][1].append(per_call(ours, args.calls))

    print(f"{args.rounds} interleaved rounds of {args.calls} calls; median cost per call")
    print(f"{'event':<20}{'baseline':>12}{'flask-appmetrics':>20}{'ratio':>8}")
    for name, (baseline_times, our_times) in results.items():
        base, ours_median = statistics.median(baseline_times), statistics.median(our_times)
        print(
            f"{name:<20}{base * 1e6:>10.2f}us{ours_median * 1e6:>18.2f}us{ours_median / base:>8.1f}"
        )


if __name__ == "__main__":
    main()
