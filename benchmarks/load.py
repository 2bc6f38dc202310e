"""Load benchmark: gunicorn with several workers, driven by ``wrk`` on 127.0.0.1.

Gunicorn servers run the same trivial app (``/items/<int:item_id>``) side by side, each
with ``--workers`` sync workers and the same arguments; only the instrumentation differs:

* ``bare``: plain Flask;
* ``bare_config``: plain Flask, started with ``-c python:flask_appmetrics.gunicorn`` and
  ``PROMETHEUS_MULTIPROC_DIR``: what the config module's hooks cost with nothing recorded.
  In most short runs it was faster than ``bare`` (up to 9 % more requests/s), as was a
  master given a config file that only imports Flask: loading the config module imports
  Flask, werkzeug and prometheus_client in the master, and workers forked from it share
  those modules instead of each importing its own. ``appmetrics`` gets that too, so
  ``appmetrics`` against ``bare_config`` (printed at the end) is what the instrumentation
  alone costs;
* ``floor``: hand-written ``before_request``/``after_request`` hooks updating pre-bound
  prometheus_client children of the three HTTP metrics, in multiprocess mode, started like
  ``bare_config``: what the obvious instrumentation with these metrics costs;
* ``appmetrics``: flask-appmetrics in prometheus_client's multiprocess mode, started with
  ``-c python:flask_appmetrics.gunicorn`` (every request writes mmap files);
* ``appmetrics_redis``: the same with ``APPMETRICS_REDIS_URL`` (a throwaway redis-server):
  the health and users windows are shared in Redis (skipped without ``redis-server`` or
  with ``--no-redis``);
* ``exporter``: prometheus_flask_exporter's ``GunicornInternalPrometheusMetrics``, also in
  multiprocess mode, without a config module (its exit hook only matters when a worker
  exits, and none does here; skipped if it is not installed).

``wrk --latency`` hits one server at a time for ``--duration`` seconds, in interleaved
rounds (the order rotates each round), so a noisy neighbour slows every variant alike.
Every ``--restart-every`` rounds all servers are stopped and fresh ones started, so that a
variant's median spans several server processes rather than one (whose memory layout and
hash seed stay what they are for as long as it lives). Each per-round median comes with a
95 % bootstrap interval: where another run of as many rounds could land.
Printed: median requests/s and p99 latency per variant, and their ratios to ``bare`` (of
the medians, and the median of each round's ratio, which pairs runs seconds apart); and the
CPU time the workers spent per request (``/proc/<pid>/stat`` of the master's children,
over each run): on a shared machine, the cost of a request that the neighbours do not
change as much as they change the wall clock.

Scrape time in multiprocess mode is measured by ``benchmarks/multiprocess_scrape.py``.

    python benchmarks/load.py [--duration 5] [--rounds 5] [--workers 3] [--restart-every 5]

The app factory :func:`create_app` is what the gunicorn workers load
(``benchmarks.load:create_app()``, variant from ``BENCH_VARIANT``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
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
    elif variant == "floor":
        from benchmarks.hand_written import instrument_by_hand

        instrument_by_hand(app)
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


def _launch(variant: str, workers: int, tmp: Path, generation: int) -> Server:
    """Start *variant*'s gunicorn (not waiting for it to be ready)."""
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
        multiproc = tmp / f"multiproc-{variant}-{generation}"
        multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    if variant.startswith("appmetrics") or variant in ("bare_config", "floor"):
        args += ["-c", "python:flask_appmetrics.gunicorn"]
    args.append("benchmarks.load:create_app()")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, pass_fds=(sock.fileno(),))
    return Server(variant, sock.getsockname()[1], proc, sock, multiproc)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _wait_ready(server: Server) -> None:
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
def servers(variants: list[str], workers: int) -> Iterator[Callable[[], dict[str, Server]]]:
    """Yields a function that (re)starts one server per variant, stopping the previous
    ones, and returns them once all serve."""
    tmp = Path(tempfile.mkdtemp(prefix="appmetrics-load-"))
    started: dict[str, Server] = {}
    generation = 0

    def restart() -> dict[str, Server]:
        nonlocal generation
        for server in started.values():
            _stop(server)
        started.clear()
        generation += 1
        for variant in variants:  # all at once: start-up imports overlap
            started[variant] = _launch(variant, workers, tmp, generation)
        for server in started.values():
            _wait_ready(server)
        return dict(started)

    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if "appmetrics_redis" in variants:
            os.environ["BENCH_REDIS_URL"] = stack.enter_context(redis_server(tmp))
        try:
            yield restart
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
    requests: int
    #: CPU time the server's workers spent per request (user + system)
    cpu_per_request: float = 0.0


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
    total = re.search(r"(\d+) requests in", out)
    if total is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return WrkResult(float(rps.group(1)), _seconds(p99.group(1)), count, int(total.group(1)))


_TICK = os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(master: int) -> float:
    """User + system CPU time of the children of gunicorn's *master* (its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == master:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def measure(server: Server, args: argparse.Namespace, duration: float) -> WrkResult:
    """One wrk run against *server*, with the CPU its workers spent per request."""
    before = workers_cpu_seconds(server.proc.pid)
    result = run_wrk(server.url + PATH, duration, args.connections, args.threads)
    spent = workers_cpu_seconds(server.proc.pid) - before
    return dataclasses.replace(result, cpu_per_request=spent / max(1, result.requests))


def load_benchmark(args: argparse.Namespace) -> None:
    variants = ["bare", "bare_config", "floor", "appmetrics"]
    if shutil.which("redis-server") is not None and not args.no_redis:
        variants.append("appmetrics_redis")
    try:
        import prometheus_flask_exporter  # noqa: F401
    except ImportError:
        print("prometheus_flask_exporter not installed: comparing bare and appmetrics only")
    else:
        variants.append("exporter")
    results: dict[str, list[WrkResult]] = {v: [] for v in variants}
    with servers(variants, args.workers) as restart:
        for round_ in range(args.rounds):
            if round_ % args.restart_every == 0:
                running = restart()
                bodies = {v: _get(server.url + PATH) for v, server in running.items()}
                assert len(set(bodies.values())) == 1, f"variants serve different pages: {bodies}"
                for server in running.values():  # warm-up: imports, first requests, page cache
                    run_wrk(server.url + PATH, 1, args.connections, args.threads)
            order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
            for variant in order:
                result = measure(running[variant], args, args.duration)
                results[variant].append(result)
                print(
                    f"  round {round_ + 1} {variant:<17} {result.requests_per_second:9.0f} req/s"
                    f"  p99 {result.p99_seconds * 1000:7.2f} ms  errors {result.errors}"
                    f"  worker CPU {result.cpu_per_request * 1e6:6.0f} us/request"
                )
    rps = {v: statistics.median(r.requests_per_second for r in rs) for v, rs in results.items()}
    p99 = {v: statistics.median(r.p99_seconds for r in rs) for v, rs in results.items()}
    cpu = {v: statistics.median(r.cpu_per_request for r in rs) for v, rs in results.items()}
    print(
        f"\nload: {args.workers} gunicorn sync workers, wrk -t{args.threads} "
        f"-c{args.connections}, {args.rounds} rounds x {args.duration:g} s, servers restarted "
        f"every {args.restart_every} rounds, medians"
    )
    print(
        f"{'variant':<18}{'req/s':>10}{'p99 ms':>10}{'req/s vs bare':>16}{'p99 vs bare':>14}"
        f"{'per-round vs bare':>20}{'95% interval':>15}{'CPU us/req':>12}{'vs bare':>9}"
    )
    for v in variants:
        paired = statistics.median(_round_ratios(results, v, "bare"))
        low, high = median_interval(_round_ratios(results, v, "bare"))
        print(
            f"{v:<18}{rps[v]:>10.0f}{p99[v] * 1000:>10.2f}"
            f"{rps[v] / rps['bare']:>16.3f}{p99[v] / p99['bare']:>14.3f}{paired:>14.3f}"
            f"{f'({low:.3f}-{high:.3f})':>15}{cpu[v] * 1e6:>12.0f}{cpu[v] / cpu['bare']:>9.3f}"
        )
    # All three import Flask in the master before forking: the differences are the recording.
    print()
    for base, what in (("bare_config", "the instrumentation alone"), ("floor", "hand-written")):
        paired_with = _round_ratios(results, "appmetrics", base)
        low, high = median_interval(paired_with)
        print(
            f"appmetrics vs {base} ({what}): per-round req/s "
            f"{statistics.median(paired_with):.3f} ({low:.3f}-{high:.3f}), "
            f"CPU/request {cpu['appmetrics'] / cpu[base]:.3f}"
        )


def _round_ratios(results: dict[str, list[WrkResult]], variant: str, base: str) -> list[float]:
    """Each round's requests/s of *variant* over *base*'s: runs seconds apart, so drift of
    the machine's load cancels."""
    return [
        r.requests_per_second / b.requests_per_second
        for r, b in zip(results[variant], results[base], strict=True)
    ]


def median_interval(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95 % interval of the median of *values* (percentile bootstrap, fixed seed): how
    far another run of as many rounds could land."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(resamples * 0.025)], medians[int(resamples * 0.975) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--restart-every",
        type=int,
        default=5,
        metavar="N",
        help="start fresh servers every N rounds (default 5)",
    )
    parser.add_argument("--no-redis", action="store_true", help="skip appmetrics_redis")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (scripts/system-deps.sh installs it)")
    load_benchmark(args)


if __name__ == "__main__":
    main()
