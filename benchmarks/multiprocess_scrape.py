"""Scrape time against the number of exited workers: folded archive vs unfolded files.

Three live workers (real processes, each a Flask app with flask-appmetrics that served
requests on 20 routes, then idle) write their files in one directory. Each exited worker
adds a copy of a live worker's files under a pid no process can have, as gunicorn or uWSGI
leave them when they recycle workers.

* prometheus_client: its plain ``MultiProcessCollector`` over the live files plus every
  exited worker's files (nothing removes them).
* flask-appmetrics: its scrape registry over the live workers' directory, where the
  exited workers' files are folded into the archive by the first scrape after they appear
  (that first scrape, which pays for the fold, is timed on its own).

Scrapes of both run in interleaved rounds; medians printed, with the ratio.

``--recycle N`` also runs real gunicorn with ``--max-requests 1`` for N requests (N
recycled workers) and reports the directory's size and the scrape time (read in this
process: through HTTP every scrape would wait for a worker to boot) before and after.

    python benchmarks/multiprocess_scrape.py [--dead 0 100 1000] [--rounds 21]
                                             [--recycle 1000]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_appmetrics.metrics.multiprocess.setup import scrape_registry  # noqa: E402

#: Above any pid Linux hands out (kernel.pid_max is at most 2**22).
DEAD_PID = 5_000_000
ROUTES = 20

_WORKER = """
import sys
from flask import Flask
from flask_appmetrics import FlaskMetrics
app = Flask("bench")
for r in range(%(routes)d):
    app.add_url_rule(f"/r{r}/<int:item_id>", f"r{r}", lambda item_id: "ok")
FlaskMetrics(app)
client = app.test_client()
for i in range(400):
    client.get(f"/r{i %% %(routes)d}/{i}").close()
    client.get(f"/missing/{i}").close()
print("ready", flush=True)
sys.stdin.readline()
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


def start_live_workers(path: Path, count: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    workers = []
    for _ in range(count):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER % {"routes": ROUTES}],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        workers.append(proc)
    for proc in workers:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    return workers


def clone(src: Path, dst: Path) -> None:
    """A byte-identical, equally sparse copy of a metric file."""
    data = src.read_bytes()
    used = struct.unpack_from("i", data)[0]
    with dst.open("wb") as f:
        f.write(data[:used])
        f.truncate(len(data))


def add_dead(template: list[Path], dirs: list[Path], first: int, count: int) -> None:
    """Files of *count* exited workers (copies of one live worker's) in each of *dirs*."""
    for i in range(first, first + count):
        for src in template:
            prefix = src.name.rsplit("_", 1)[0]
            for d in dirs:
                clone(src, d / f"{prefix}_{DEAD_PID + i}.db")


def plain_scrape(path: Path) -> Callable[[], bytes]:
    def scrape() -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    return scrape


def our_scrape(path: Path) -> Callable[[], bytes]:
    def scrape() -> bytes:
        return generate_latest(scrape_registry(str(path)))

    return scrape


def interleaved(a: Callable[[], bytes], b: Callable[[], bytes], rounds: int) -> tuple[float, float]:
    a(), b()  # warm-up
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(rounds):
        pair = ((a, times_a), (b, times_b))
        for scrape, times in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            scrape()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def median_ms(scrape: Callable[[], bytes], rounds: int) -> float:
    scrape()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        scrape()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def scrape_vs_dead(dead_counts: list[int], rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="appmetrics-mp-") as tmp:
        live = Path(tmp) / "live"
        live.mkdir()
        workers = start_live_workers(live, 3)
        try:
            template = sorted(live.glob(f"*_{workers[0].pid}.db"))
            print(f"live workers: 3, {len(template)} files each; rounds: {rounds}")
            print(
                f"{'exited':>7} {'files plain':>12} {'files ours':>11} {'fold ms':>8} "
                f"{'prometheus_client ms':>21} {'flask-appmetrics ms':>20} {'ratio':>6}"
            )
            done = 0
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
                fold_ms = (time.perf_counter() - start) * 1000
                theirs, ours = interleaved(plain_scrape(plain), our_scrape(live), rounds)
                print(
                    f"{dead:>7} {len(os.listdir(plain)):>12} {len(os.listdir(live)):>11} "
                    f"{fold_ms:>8.1f} {theirs * 1000:>21.2f} {ours * 1000:>20.2f} "
                    f"{ours / theirs:>6.2f}"
                )
        finally:
            for proc in workers:
                proc.kill()
                proc.wait()
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        stream.close()


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
                f"\ngunicorn -w 2 --max-requests 1, {requests} requests in {took:.0f} s, served by "
                f"{len(pids)} workers\n  directory: {files_before} files after 2 requests, "
                f"{len(os.listdir(multiproc))} after {requests}\n  scrape (in this process, "
                f"median of 21): {before:.2f} ms after 2 requests, {after:.2f} ms after "
                f"{requests}\n  {line}"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead", type=int, nargs="*", default=[0, 100, 1000])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--recycle", type=int, default=0, help="gunicorn requests (0: skip)")
    args = parser.parse_args()
    if args.dead:
        scrape_vs_dead(args.dead, args.rounds)
    if args.recycle:
        recycle(args.recycle)


if __name__ == "__main__":
    main()
