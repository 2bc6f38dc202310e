"""Cost of ``instrument_client`` per google-genai call, against the same client uninstrumented.

Both clients call the local Gemini API stand-in (``example_app.fake_gemini``) over HTTP on
127.0.0.1, so a call costs what google-genai and the loopback cost, and the difference is
what recording adds (the calls, duration, tokens, cost, finish reasons, the OpenTelemetry
instruments, quota and spend). Interleaved rounds (each variant once per round, in turn) so
that machine noise hits both alike; prints the median cost per call of each and the
difference, for ``generate_content`` and for a three-chunk ``generate_content_stream``.

Run: ``.venv/bin/python benchmarks/llm_client.py [--rounds 11] [--calls 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from example_app.fake_gemini import FakeGemini
from flask_appmetrics import FlaskMetrics, track_gemini_call
from flask_appmetrics.integrations.genai import instrument_client


def per_call(function: Callable[[], object], calls: int) -> float:
    start = perf_counter()
    for _ in range(calls):
        function()
    return (perf_counter() - start) / calls


def main() -> None:
    from google import genai
    from google.genai import types

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    server = FakeGemini().start()
    options = types.HttpOptions(base_url=server.url)
    plain = genai.Client(api_key="k", http_options=options)
    recorded = instrument_client(genai.Client(api_key="k", http_options=options))
    app = Flask("bench")
    FlaskMetrics(app, registry=CollectorRegistry())
    model = "gemini-2.5-flash"

    def call(client: Any) -> Callable[[], object]:
        return lambda: client.models.generate_content(model=model, contents="benchmark")

    def stream(client: Any) -> Callable[[], object]:
        return lambda: list(client.models.generate_content_stream(model=model, contents="b"))

    variants = {
        "generate_content, plain": call(plain),
        "generate_content, instrumented": call(recorded),
        "generate_content_stream, plain": stream(plain),
        "generate_content_stream, instrumented": stream(recorded),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with app.app_context():
        for function in variants.values():  # warm up: connections, first-call costs
            per_call(function, 20)
        for _ in range(args.rounds):
            for name, function in variants.items():
                samples[name].append(per_call(function, args.calls))
    # The recording alone, around a canned response: no HTTP, no google-genai request.
    canned = plain.models.generate_content(model=model, contents="c")

    def bare() -> object:
        return canned

    def tracked() -> object:
        with track_gemini_call("/api/generate", model) as tracker:
            tracker.record_response(canned)
        return canned

    alone = {"canned response, bare": bare, "canned response, recorded": tracked}
    for name in alone:
        samples[name] = []
    with app.app_context():
        for _ in range(args.rounds):
            for name, function in alone.items():
                samples[name].append(per_call(function, 20 * args.calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, median in medians.items():
        print(f"{name:40s} {median * 1e6:9.1f} us per call")
    for kind in ("generate_content", "generate_content_stream"):
        plain_cost = medians[f"{kind}, plain"]
        extra = medians[f"{kind}, instrumented"] - plain_cost
        print(
            f"{kind}: recording adds {extra * 1e6:.1f} us per call "
            f"({medians[f'{kind}, instrumented'] / plain_cost:.3f}x a loopback call)"
        )
    alone_cost = medians["canned response, recorded"] - medians["canned response, bare"]
    print(f"recording one call alone: {alone_cost * 1e6:.1f} us")
    plain.close()
    recorded.close()
    server.stop()


if __name__ == "__main__":
    main()
