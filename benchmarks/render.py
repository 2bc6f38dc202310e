"""``/metrics`` render time per series: flask-appmetrics' view against prometheus_client's
own WSGI app (``make_wsgi_app``), in one process, in interleaved rounds.

An app with flask-appmetrics serves requests on enough routes for the page to show about
``--series`` samples. Then ``GET /metrics`` is served, as a WSGI server serves it (call,
iterate the body, close), by:

* ``prometheus_client``: ``make_wsgi_app`` over the same registry (in-process mode), or
  over a fresh registry with ``MultiProcessCollector`` (multiprocess mode, as its
  documentation sets it up);
* ``flask-appmetrics``: the app's own ``/metrics`` (the guard, the encoder the scraper
  asks for, the multiprocess scrape registry in multiprocess mode).

For three requests: a plain one (the text format), Prometheus' (OpenMetrics and gzip), and
the text format with gzip. Printed: median CPU time per page and per sample, and the
ratio. (The view compresses at a lower level than prometheus_client: with gzip, part of
the difference is that.) Multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` set before
prometheus_client is imported: the script runs itself again in a child process for it.

    python benchmarks/render.py [--series 1000 10000] [--rounds 15] [--mode both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SAMPLES_PER_ROUTE = 19
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
REQUESTS = {
    "text": {},
    "prometheus (openmetrics, gzip)": {
        "HTTP_ACCEPT": PROMETHEUS_ACCEPT,
        "HTTP_ACCEPT_ENCODING": "gzip",
    },
    "text, gzip": {"HTTP_ACCEPT_ENCODING": "gzip"},
}


def app_with_series(series: int, registry: Any) -> Any:
    from flask import Flask

    from flask_appmetrics import FlaskMetrics

    app = Flask("render")
    routes = max(1, series // SAMPLES_PER_ROUTE)
    for r in range(routes):
        app.add_url_rule(f"/r{r}/<int:item_id>", f"r{r}", lambda item_id: "ok")
    FlaskMetrics(app, registry=registry)
    for i in range(max(400, 2 * routes)):
        serve(app, f"/r{i % routes}/{i}", {})
        serve(app, f"/missing/{i}", {}, "404")
    return app


def serve(app: WSGIApp, path: str, headers: dict[str, str], expect: str = "200") -> bytes:
    """One request as a WSGI server serves it: call, iterate the whole body, close."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path).get_environ()
    environ.update(headers)
    status: list[str] = []

    def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    body = app(environ, start_response)
    try:
        out = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    assert status[0].startswith(expect), status
    return out


def interleaved(a: Callable[[], bytes], b: Callable[[], bytes], rounds: int) -> tuple[float, float]:
    a(), b()  # warm-up
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.process_time()
            (a, b)[which]()
            times[which].append(time.process_time() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def samples_on(body: bytes, headers: dict[str, str]) -> int:
    import gzip

    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    from prometheus_client.parser import text_string_to_metric_families as text

    if "HTTP_ACCEPT_ENCODING" in headers:
        body = gzip.decompress(body)
    parse = om if "HTTP_ACCEPT" in headers else text
    return sum(len(f.samples) for f in parse(body.decode()))


def run(mode: str, series_counts: list[int], rounds: int) -> None:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    print(f"\n{mode}: GET /metrics, CPU time, median of {rounds} interleaved rounds")
    print(
        f"{'series':>7} {'samples':>8} {'request':>31} {'prometheus_client ms':>21} "
        f"{'flask-appmetrics ms':>20} {'us/sample: theirs':>18} {'ours':>6} {'ratio':>6}"
    )
    for series in series_counts:
        registry = CollectorRegistry()
        app = app_with_series(series, registry)
        if mode == "multiprocess":
            mp_registry = CollectorRegistry()
            MultiProcessCollector(mp_registry)  # type: ignore[no-untyped-call]
            theirs_app = make_wsgi_app(mp_registry)
        else:
            theirs_app = make_wsgi_app(registry)
        for name, headers in REQUESTS.items():

            def theirs(headers: dict[str, str] = headers, wsgi: WSGIApp = theirs_app) -> bytes:
                return serve(wsgi, "/metrics", headers)

            def ours(headers: dict[str, str] = headers, wsgi: WSGIApp = app) -> bytes:
                return serve(wsgi, "/metrics", headers)

            count = samples_on(ours(), headers)
            a, b = interleaved(theirs, ours, rounds)
            print(
                f"{series:>7} {count:>8} {name:>31} {a * 1000:>21.2f} {b * 1000:>20.2f} "
                f"{a / count * 1e6:>18.2f} {b / count * 1e6:>6.2f} {b / a:>6.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mode", choices=("both", "in-process", "multiprocess"), default="both")
    args = parser.parse_args()
    if args.mode in ("both", "in-process"):
        run("in-process", args.series, args.rounds)
    if args.mode == "both":
        with tempfile.TemporaryDirectory(prefix="appmetrics-render-") as tmp:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
            argv = [sys.executable, __file__, "--mode", "multiprocess", "--rounds"]
            argv += [str(args.rounds), "--series", *map(str, args.series)]
            subprocess.run(argv, env=env, check=True)
    elif args.mode == "multiprocess":
        assert "PROMETHEUS_MULTIPROC_DIR" in os.environ
        run("multiprocess", args.series, args.rounds)


if __name__ == "__main__":
    main()
