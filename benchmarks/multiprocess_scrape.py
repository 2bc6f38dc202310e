"""Multiprocess scrape time: flask-appmetrics' ``/metrics`` against prometheus_client's
``MultiProcessCollector``, by number of series and number of exited workers.

Part 1, series. Three live workers (real processes, each a Flask app with flask-appmetrics
that served requests on enough routes for the page to show about ``--series`` samples,
then idle) write their files in one directory. Their requests carry a sampled
``traceparent``: the OpenMetrics page carries exemplars, which prometheus_client's
collector drops. In this process, in interleaved rounds:

* prometheus_client: a fresh registry with ``MultiProcessCollector`` and its encoder, as
  its documentation sets up multiprocess mode (``generate_latest``, or the OpenMetrics
  encoder Prometheus asks for);
* flask-appmetrics: ``encode(scrape_registry(path), encoder)``, what ``/metrics`` runs in
  multiprocess mode (the scrape registry folds exited workers, reads the archive and the
  files, renders the page).

Medians and their ratio are printed, and the pages are checked to hold the same samples
(``prometheus_client.parser``). Printed twice: wall clock, and the CPU time of this
process (the machine's neighbours slow the wall clock, not the work done). Also printed:
the first scrape of a fresh process (CPU time, median of ``--cold`` processes), where
nothing is cached yet. With ``--callgrind N``: the instructions one warm scrape executes
(valgrind's callgrind, N scrapes counted), which no neighbour on the machine changes (in
part 2 too, for ours).

Part 2, exited workers (``--dead``). Each exited worker adds a copy of a small worker's
files (20 routes) under a pid no process can have, as gunicorn or uWSGI leave them when
they recycle workers. prometheus_client reads every file (nothing removes them);
flask-appmetrics folds them into its archive at the first scrape after they appear (that
scrape, which pays for the fold, is timed on its own). Flat means our scrape time does not
grow with the number of exited workers. "1st ms" is the first scrape after they appear.

Part 3, ``--recycle N``: real gunicorn with ``--max-requests 1`` for N requests (N
recycled workers); the directory's size and the scrape time (read in this process: through
HTTP every scrape would wait for a worker to boot) before and after.

    python benchmarks/multiprocess_scrape.py [--series 1000 10000] [--rounds 21] [--callgrind 2]
        [--dead 0 100 1000] [--dead-series 10000] [--dead-rounds 5] [--recycle 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_appmetrics.metrics.multiprocess.setup import encode, scrape_registry  # noqa: E402

Encoder = Callable[[Collector], bytes]
#: Above any pid Linux hands out (kernel.pid_max is at most 2**22).
DEAD_PID = 5_000_000
#: Samples one route adds to the page (15 buckets, _count, _sum, requests_total, in-progress).
SAMPLES_PER_ROUTE = 19
SMALL_WORKER_ROUTES = 20
OPENMETRICS = choose_encoder("application/openmetrics-text;version=1.0.0")[0]
ENCODERS: dict[str, Encoder] = {"text": generate_latest, "openmetrics": OPENMETRICS}

_WORKER = """
import sys
from flask import Flask
from flask_appmetrics import FlaskMetrics
routes = int(sys.argv[1])
app = Flask("bench")
for r in range(routes):
    app.add_url_rule(f"/r{r}/<int:item_id>", f"r{r}", lambda item_id: "ok")
FlaskMetrics(app)
client = app.test_client()
for i in range(max(400, 2 * routes)):
    # A traced caller: each bucket a request falls in gets an exemplar.
    trace = {"traceparent": f"00-{i + 1:032x}-00f067aa0ba902b7-01"}
    client.get(f"/r{i % routes}/{i}", headers=trace).close()
    client.get(f"/missing/{i}").close()
print("ready", flush=True)
sys.stdin.readline()
"""

_COLD = """
import sys, time
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from flask_appmetrics.metrics.multiprocess.setup import encode, scrape_registry
path, who = sys.argv[1], sys.argv[2]
start = time.process_time()
if who == "plain":
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    generate_latest(registry)
else:
    encode(scrape_registry(path), generate_latest)
print(time.process_time() - start)
"""


def create_app() -> Any:
    """The app gunicorn serves for ``--recycle``."""
    from flask import Flask

    from flask_appmetrics import FlaskMetrics

    app = Flask("recycle")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id, "pid": os.getpid()}

    FlaskMetrics(app)
    return app


@contextmanager
def live_workers(path: Path, count: int, routes: int) -> Iterator[list[int]]:
    """*count* live worker processes writing in *path*; yields their pids."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    workers = []
    try:
        for _ in range(count):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(routes)],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in workers:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        yield [proc.pid for proc in workers]
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def clone(src: Path, dst: Path) -> None:
    """A byte-identical, equally sparse copy of a metric file."""
    data = src.read_bytes()
    used = struct.unpack_from("i", data)[0]
    with dst.open("wb") as f:
        f.write(data[:used])
        f.truncate(len(data))


def add_dead(template: list[Path], dirs: list[Path], first: int, count: int) -> None:
    """Files of *count* exited workers (copies of one worker's) in each of *dirs*."""
    for i in range(first, first + count):
        for src in template:
            prefix = src.name.rsplit("_", 1)[0]
            for d in dirs:
                clone(src, d / f"{prefix}_{DEAD_PID + i}.db")


def plain_scrape(path: Path, encoder: Encoder = generate_latest) -> Callable[[], bytes]:
    def scrape() -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
        return encoder(registry)

    return scrape


def our_scrape(path: Path, encoder: Encoder = generate_latest) -> Callable[[], bytes]:
    def scrape() -> bytes:
        return encode(scrape_registry(str(path)), encoder)

    return scrape


def interleaved(
    a: Callable[[], bytes], b: Callable[[], bytes], rounds: int
) -> tuple[float, float, float, float]:
    """Median seconds of *a* and *b*, alternately first, so that noise hits both alike:
    wall clock, then CPU time of this process (less disturbed by neighbours taking the
    CPU away)."""
    a(), b()  # warm-up
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            scrape = (a, b)[which]
            start, start_cpu = time.perf_counter(), time.process_time()
            scrape()
            cpu[which].append(time.process_time() - start_cpu)
            wall[which].append(time.perf_counter() - start)
    med = statistics.median
    return med(wall[0]), med(wall[1]), med(cpu[0]), med(cpu[1])


def median_ms(scrape: Callable[[], bytes], rounds: int) -> float:
    scrape()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        scrape()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def samples(body: bytes, openmetrics: bool) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    parse = parse_om if openmetrics else parse_text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parse(body.decode())
        for s in family.samples
    }


_CALLGRIND = """
import sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from flask_appmetrics.metrics.multiprocess.setup import encode, scrape_registry
path, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
def plain():
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    generate_latest(registry)
def ours():
    encode(scrape_registry(path), generate_latest)
scrape = plain if who == "plain" else ours
for _ in range(1 + count):  # the first one warms what a server keeps between scrapes
    scrape()
"""


def instructions(path: Path, who: str, scrapes: int) -> float:
    """Instructions (callgrind's Ir) one warm scrape executes: deterministic, whatever the
    machine's neighbours do. Two runs, with *scrapes* scrapes and with none; the
    difference divided."""
    counts = []
    for count in (0, scrapes):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             "-c", _CALLGRIND, str(path), who, str(count)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
        counts.append(int(out.rsplit("Collected : ", 1)[1].split()[0]))
    return (counts[1] - counts[0]) / scrapes


def cold_ms(path: Path, who: str, runs: int) -> float:
    """CPU time of the first scrape of a fresh process (nothing cached), median."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _COLD, str(path), who],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        times.append(float(out))
    return statistics.median(times) * 1000


def scrape_vs_series(series_counts: list[int], rounds: int, cold_runs: int, callgrind: int) -> None:
    print(
        f"\nPart 1: scrape time by series; 3 live workers; same process, {rounds} interleaved "
        "rounds, medians (wall clock); cold = first scrape of a fresh process (CPU, median of "
        f"{cold_runs})"
    )
    print(
        f"{'series':>7} {'samples':>8} {'format':>12} {'prometheus_client ms':>21} "
        f"{'flask-appmetrics ms':>20} {'ratio':>6} {'CPU ms: theirs':>15} {'ours':>7} "
        f"{'ratio':>6}"
    )
    for series in series_counts:
        routes = max(1, series // SAMPLES_PER_ROUTE)
        with tempfile.TemporaryDirectory(prefix="appmetrics-mp-") as tmp:
            path = Path(tmp)
            with live_workers(path, 3, routes):
                for name, encoder in ENCODERS.items():
                    theirs_page = plain_scrape(path, encoder)()
                    ours_page = our_scrape(path, encoder)()
                    om = name == "openmetrics"
                    same = samples(theirs_page, om) == samples(ours_page, om)
                    assert same, "the pages differ"
                    count = len(samples(ours_page, om))
                    theirs, ours, theirs_cpu, ours_cpu = interleaved(
                        plain_scrape(path, encoder), our_scrape(path, encoder), rounds
                    )
                    print(
                        f"{series:>7} {count:>8} {name:>12} {theirs * 1000:>21.2f} "
                        f"{ours * 1000:>20.2f} {ours / theirs:>6.3f} {theirs_cpu * 1000:>15.2f} "
                        f"{ours_cpu * 1000:>7.2f} {ours_cpu / theirs_cpu:>6.3f}"
                    )
                if cold_runs:
                    theirs = cold_ms(path, "plain", cold_runs)
                    ours = cold_ms(path, "ours", cold_runs)
                    print(
                        f"{series:>7} {count:>8} {'text, cold':>12} {'':>21} {'':>20} {'':>6} "
                        f"{theirs:>15.2f} {ours:>7.2f} {ours / theirs:>6.3f}"
                    )
                if callgrind:
                    theirs = instructions(path, "plain", callgrind)
                    ours = instructions(path, "ours", callgrind)
                    print(
                        f"{series:>7} {count:>8} {'text':>12}  callgrind, instructions per warm "
                        f"scrape: prometheus_client {theirs / 1e6:.1f} M, flask-appmetrics "
                        f"{ours / 1e6:.1f} M, ratio {ours / theirs:.3f}"
                    )


def scrape_vs_dead(dead_counts: list[int], series: int, rounds: int, callgrind: int) -> None:
    print(
        f"\nPart 2: scrape time by exited workers (each {SMALL_WORKER_ROUTES} routes), "
        f"3 live workers with a {series}-series page; {rounds} interleaved rounds, medians"
    )
    print(
        f"{'exited':>7} {'files plain':>12} {'files ours':>11} {'1st ms':>8} "
        f"{'prometheus_client ms':>21} {'flask-appmetrics ms':>20} {'ratio':>6} "
        f"{'CPU ms: ours':>13} {'ratio':>6}"
        + (f" {'ours, M instructions':>21}" if callgrind else "")
    )
    with tempfile.TemporaryDirectory(prefix="appmetrics-mp-") as tmp:
        live = Path(tmp) / "live"
        small = Path(tmp) / "small"
        live.mkdir()
        small.mkdir()
        with (
            live_workers(small, 1, SMALL_WORKER_ROUTES) as (small_pid,),
            live_workers(live, 3, max(1, series // SAMPLES_PER_ROUTE)),
        ):
            template = sorted(small.glob(f"*_{small_pid}.db"))
            done = 0
            ours_at: dict[int, float] = {}
            ir_at: dict[int, float] = {}
            for dead in sorted(dead_counts):
                plain = Path(tmp) / f"plain-{dead}"
                plain.mkdir()
                for f in live.glob("*.db"):
                    clone(f, plain / f.name)
                add_dead(template, [plain], 0, dead)
                add_dead(template, [live], done, dead - done)
                done = dead
                start = time.perf_counter()
                our_scrape(live)()  # folds what exited since the last scrape
                first_ms = (time.perf_counter() - start) * 1000
                assert samples(plain_scrape(plain)(), False) == samples(our_scrape(live)(), False)
                theirs, ours, theirs_cpu, ours_cpu = interleaved(
                    plain_scrape(plain), our_scrape(live), rounds
                )
                ours_at[dead] = ours_cpu
                line = (
                    f"{dead:>7} {len(os.listdir(plain)):>12} {len(os.listdir(live)):>11} "
                    f"{first_ms:>8.1f} {theirs * 1000:>21.2f} {ours * 1000:>20.2f} "
                    f"{ours / theirs:>6.3f} {ours_cpu * 1000:>13.2f} {ours_cpu / theirs_cpu:>6.3f}"
                )
                if callgrind:
                    counted = instructions(live, "ours", callgrind)
                    ir_at[dead] = counted
                    line += f" {counted / 1e6:>21.1f}"
                print(line)
                for f in plain.iterdir():
                    f.unlink()
                plain.rmdir()
            first, last = min(ours_at), max(ours_at)
            print(
                f"flask-appmetrics CPU time with {last} exited workers / with {first}: "
                f"{ours_at[last] / ours_at[first]:.2f}"
            )
            if ir_at:
                print(
                    f"flask-appmetrics instructions with {last} exited workers / with {first}: "
                    f"{ir_at[last] / ir_at[first]:.3f}"
                )


def recycle(requests: int) -> None:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with tempfile.TemporaryDirectory(prefix="appmetrics-recycle-") as tmp:
        multiproc = Path(tmp)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        args = [gunicorn, "-c", "python:flask_appmetrics.gunicorn", "-w", "2"]
        args += ["-b", f"fd://{sock.fileno()}", "--max-requests", "1", "--log-level", "warning"]
        args += ["--chdir", str(ROOT / "benchmarks"), "multiprocess_scrape:create_app()"]
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        proc = subprocess.Popen(args, env=env, pass_fds=(sock.fileno(),))
        try:
            pids: set[str] = set()
            get = our_scrape(multiproc)

            def serve(first: int, count: int) -> None:
                for i in range(first, first + count):
                    with urllib.request.urlopen(f"{base}/items/{i}", timeout=30) as response:
                        pids.add(response.read().decode().split('"pid":')[1].strip(" }\n"))

            serve(0, 2)
            before = median_ms(get, 21)
            files_before = len(os.listdir(multiproc))
            start = time.monotonic()
            serve(2, requests - 2)
            took = time.monotonic() - start
            time.sleep(2)  # the last worker's exit and fold
            after = median_ms(get, 21)
            line = next(
                ln
                for ln in get().decode().splitlines()
                if ln.startswith('http_requests_total{endpoint="/items')
            )
            print(
                f"\nPart 3: gunicorn -w 2 --max-requests 1, {requests} requests in {took:.0f} s, "
                f"served by {len(pids)} workers\n  directory: {files_before} files after 2 "
                f"requests, {len(os.listdir(multiproc))} after {requests}\n  scrape (in this "
                f"process, median of 21): {before:.2f} ms after 2 requests, {after:.2f} ms "
                f"after {requests} ({after / before:.2f}x)\n  {line}"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--cold", type=int, default=5, help="fresh processes (0: skip)")
    parser.add_argument(
        "--callgrind", type=int, default=0, help="scrapes counted by callgrind (0: skip)"
    )
    parser.add_argument("--dead", type=int, nargs="*", default=[0, 100, 1000])
    parser.add_argument("--dead-series", type=int, default=10_000)
    parser.add_argument("--dead-rounds", type=int, default=5)
    parser.add_argument("--recycle", type=int, default=0, help="gunicorn requests (0: skip)")
    args = parser.parse_args()
    if args.series:
        scrape_vs_series(args.series, args.rounds, args.cold, args.callgrind)
    if args.dead:
        scrape_vs_dead(args.dead, args.dead_series, args.dead_rounds, args.callgrind)
    if args.recycle:
        recycle(args.recycle)


if __name__ == "__main__":
    main()
