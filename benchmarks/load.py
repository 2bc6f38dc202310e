"""Load benchmark: gunicorn with several workers, driven by ``wrk`` on 127.0.0.1.

Part 1, throughput and tail latency. Gunicorn servers run the same trivial app
(``/items/<int:item_id>``) side by side, each with ``--workers`` sync workers:

* ``bare``: plain Flask;
* ``appmetrics``: flask-appmetrics in prometheus_client's multiprocess mode, started with
  ``-c python:flask_appmetrics.gunicorn`` (every request writes mmap files);
* ``appmetrics_redis``: the same with ``APPMETRICS_REDIS_URL`` (a throwaway redis-server):
  the health and users windows are updated in Redis on every request (skipped without
  ``redis-server`` or with ``--no-redis``);
* ``exporter``: prometheus_flask_exporter's ``GunicornInternalPrometheusMetrics``, also in
  multiprocess mode (skipped if it is not installed).

``wrk`` hits one server at a time for ``--duration`` seconds, in interleaved rounds (the
order rotates each round), so a noisy neighbour slows every variant alike. Printed: median
requests/s and p99 latency per variant, and their ratios to ``bare``.

Part 2, scrape time of ``/metrics`` in multiprocess mode. A multiprocess directory is
filled with ``--series`` counter series (1,000 and 10,000 by default) in each of four
worker files; then the median time to render the page is measured for prometheus_client's
own ``MultiProcessCollector`` and for flask-appmetrics' scrape registry (the same files,
plus derived gauges), in-process, and for a real ``GET /metrics`` on gunicorn.

    python benchmarks/load.py [--duration 5] [--rounds 3] [--workers 3]

The app factory :func:`create_app` is what the gunicorn workers load
(``benchmarks.load:create_app()``, variant from ``BENCH_VARIANT``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.config import Config as GunicornConfig

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
PATH = "/items/1"


# -- the app the workers serve --------------------------------------------------------------


def create_app() -> Any:
    """The benchmark app, instrumented as ``BENCH_VARIANT`` says."""
    from flask import Flask

    app = Flask("load")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    variant = os.environ.get("BENCH_VARIANT", "bare")
    if variant.startswith("appmetrics"):
        from flask_appmetrics import FlaskMetrics

        if variant == "appmetrics_redis":
            app.config["APPMETRICS_REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
        FlaskMetrics(app)
    elif variant == "exporter":
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics(app)
    return app


# -- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    port: int
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    multiproc: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start(variant: str, workers: int, tmp: Path) -> Server:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    env = {**os.environ, "BENCH_VARIANT": variant}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = [GUNICORN, "-w", str(workers), "-b", f"fd://{sock.fileno()}", "--log-level", "warning"]
    if "control_socket_disable" in GunicornConfig().settings:
        # gunicorn >= 25: one control socket path per machine by default; ours run side by side.
        args.append("--no-control-socket")
    multiproc = None
    if variant != "bare":
        multiproc = tmp / f"multiproc-{variant}"
        multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    if variant.startswith("appmetrics"):
        args += ["-c", "python:flask_appmetrics.gunicorn"]
    args.append("benchmarks.load:create_app()")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, pass_fds=(sock.fileno(),))
    server = Server(variant, sock.getsockname()[1], proc, sock, multiproc)
    _wait_ready(server)
    return server


def _wait_ready(server: Server) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.variant}: gunicorn exited with {server.proc.returncode}")
        try:
            with urllib.request.urlopen(server.url + PATH, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.variant}: not ready after 30 s")


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    server.sock.close()


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway redis-server on a free local port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def servers(variants: list[str], workers: int) -> Iterator[dict[str, Server]]:
    tmp = Path(tempfile.mkdtemp(prefix="appmetrics-load-"))
    started: dict[str, Server] = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if "appmetrics_redis" in variants:
            os.environ["BENCH_REDIS_URL"] = stack.enter_context(redis_server(tmp))
        try:
            for variant in variants:
                started[variant] = _start(variant, workers, tmp)
            yield started
        finally:
            for server in started.values():
                _stop(server)


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p99_seconds: float
    errors: int


def run_wrk(url: str, duration: float, connections: int, threads: int) -> WrkResult:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if rps is None or p99 is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    count = int(errors.group(1)) if errors else 0
    if socket_errors:
        count += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return WrkResult(float(rps.group(1)), _seconds(p99.group(1)), count)


def load_benchmark(args: argparse.Namespace) -> None:
    variants = ["bare", "appmetrics"]
    if shutil.which("redis-server") is not None and not args.no_redis:
        variants.append("appmetrics_redis")
    try:
        import prometheus_flask_exporter  # noqa: F401
    except ImportError:
        print("prometheus_flask_exporter not installed: comparing bare and appmetrics only")
    else:
        variants.append("exporter")
    results: dict[str, list[WrkResult]] = {v: [] for v in variants}
    with servers(variants, args.workers) as running:
        for server in running.values():  # warm-up: imports, first requests, page cache
            run_wrk(server.url + PATH, 1, args.connections, args.threads)
        for round_ in range(args.rounds):
            order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
            for variant in order:
                result = run_wrk(
                    running[variant].url + PATH, args.duration, args.connections, args.threads
                )
                results[variant].append(result)
                print(
                    f"  round {round_ + 1} {variant:<17} {result.requests_per_second:9.0f} req/s"
                    f"  p99 {result.p99_seconds * 1000:7.2f} ms  errors {result.errors}"
                )
    rps = {v: statistics.median(r.requests_per_second for r in rs) for v, rs in results.items()}
    p99 = {v: statistics.median(r.p99_seconds for r in rs) for v, rs in results.items()}
    print(
        f"\nload: {args.workers} gunicorn sync workers, wrk -t{args.threads} "
        f"-c{args.connections}, {args.rounds} rounds x {args.duration:g} s, medians"
    )
    print(f"{'variant':<18}{'req/s':>10}{'p99 ms':>10}{'req/s vs bare':>16}{'p99 vs bare':>14}")
    for v in variants:
        print(
            f"{v:<18}{rps[v]:>10.0f}{p99[v] * 1000:>10.2f}"
            f"{rps[v] / rps['bare']:>16.3f}{p99[v] / p99['bare']:>14.3f}"
        )


# -- scrape time -------------------------------------------------------------------------------


def fill_multiproc_dir(path: Path, series: int, processes: int = 4) -> None:
    """*series* counter series (one family, 10 label values x series/10) in each of
    *processes* worker files: the page shows *series* series after aggregation."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    for pid in range(100_000, 100_000 + processes):
        files = MmapedDict(str(path / f"counter_{pid}.db"))
        for i in range(series):
            key = mmap_key(
                "bench_requests",
                "bench_requests_total",
                ("endpoint", "status"),
                (f"/route/{i // 10}", str(200 + i % 10)),
                "Benchmark requests",
            )
            files.write_value(key, float(i + pid), 0.0)
        files.close()


def _median_seconds(render: Any, repeat: int) -> float:
    render()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        render()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_medians(a: Any, b: Any, repeat: int) -> tuple[float, float]:
    """Median seconds of *a* and *b*, run alternately so that noise hits both alike."""
    a(), b()  # warm-up
    times_a, times_b = [], []
    for i in range(repeat):
        for render, times in ((a, times_a), (b, times_b))[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            render()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def scrape_benchmark(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from flask_appmetrics.metrics.multiprocess.setup import scrape_registry

    print(f"\nscrape time of a multiprocess /metrics page, median of {args.scrape_repeat}")
    print(f"{'series':>8}{'prometheus_client ms':>22}{'flask-appmetrics ms':>21}{'ratio':>8}")
    for series in args.series:
        with tempfile.TemporaryDirectory(prefix="appmetrics-scrape-") as tmp:
            path = Path(tmp)
            fill_multiproc_dir(path, series)

            def plain(path: Path = path) -> bytes:
                registry = CollectorRegistry()
                MultiProcessCollector(registry, str(path))
                return generate_latest(registry)

            def ours(path: Path = path) -> bytes:
                return generate_latest(scrape_registry(str(path)))

            baseline, mine = _interleaved_medians(plain, ours, args.scrape_repeat)
            print(f"{series:>8}{baseline * 1000:>22.2f}{mine * 1000:>21.2f}{mine / baseline:>8.3f}")
    http_scrape(args)


def http_scrape(args: argparse.Namespace) -> None:
    """``GET /metrics`` through gunicorn (appmetrics variant) with the largest page."""
    import urllib.request

    series = max(args.series)
    with servers(["appmetrics"], args.workers) as running:
        server = running["appmetrics"]
        assert server.multiproc is not None
        fill_multiproc_dir(server.multiproc, series)

        def get() -> bytes:
            with urllib.request.urlopen(server.url + "/metrics", timeout=30) as response:
                body: bytes = response.read()
                return body

        page = get()
        lines = sum(1 for line in page.splitlines() if line and not line.startswith(b"#"))
        seconds = _median_seconds(get, args.scrape_repeat)
        print(
            f"GET /metrics via gunicorn with {series} bench series ({lines} samples on the "
            f"page): median {seconds * 1000:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--series", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--scrape-repeat", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--no-redis", action="store_true", help="skip appmetrics_redis")
    parser.add_argument("--skip-scrape", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_load:
        parser.error("wrk is not installed (scripts/system-deps.sh installs it)")
    if not args.skip_load:
        load_benchmark(args)
    if not args.skip_scrape:
        scrape_benchmark(args)


if __name__ == "__main__":
    main()
