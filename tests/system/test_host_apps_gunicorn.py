"""The shop under real gunicorn: recycled workers, multiprocess mode, files it serves itself.

Two sync workers restarted every 10 requests (``--max-requests 10``) serve 200 requests
(static files, ``send_file`` downloads, ranges, HEAD, a stream); every scrape must then
show the exact totals, no request in progress, a multiprocess directory that does not
grow with each dead worker, and the user's own files in that directory left alone.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.support.gunicorn_cmd import GUNICORN, NO_CONTROL_SOCKET
from tests.support.gunicorn_server import Samples, parse_samples, stop_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 30.0
APP = "tests.support.hosts.shop:create_app()"
STATIC = "/static/<path:filename>"


class Server:
    """gunicorn serving the shop on a socket we bound ourselves (port 0: no port race)."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.log_path = tmp / "gunicorn.log"
        self.log = self.log_path.open("w")
        fd = self.sock.fileno()
        self.proc = subprocess.Popen(
            [GUNICORN, *args, "-b", f"fd://{fd}", *NO_CONTROL_SOCKET, APP],
            cwd=ROOT,
            env=env,
            pass_fds=(fd,),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(p) for p in children.read_text().split()}
        except FileNotFoundError:
            return set()

    def wait_workers(self, count: int) -> set[int]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            if len(self.workers()) == count:
                return self.workers()
            time.sleep(0.02)
        raise AssertionError(f"gave up waiting for {count} workers")

    def request(self, method: str, path: str, **headers: str) -> requests.Response:
        return requests.request(method, self.base + path, headers=headers, timeout=WAIT_SECONDS)

    def scrape(self) -> Samples:
        response = self.request("GET", "/metrics")
        assert response.status_code == 200
        return parse_samples(response.text)

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.proc, self.sock, self.log)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _user_database(path: Path) -> None:
    """The app's own SQLite file, kept (unwisely, but it happens) in the metrics dir."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
        db.executemany("INSERT INTO orders (total) VALUES (?)", [(9.99,), (19.5,)])
    sqlite3.connect(path).close()


def _orders(path: Path) -> list[tuple[int, float]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute("SELECT id, total FROM orders ORDER BY id"))
    finally:
        db.close()


#: Replaced by the script's ETag, which the first request learns.
ETAG = "<etag of /static/app.js>"

# (method, path, headers, status, endpoint, times), interleaved.
TRAFFIC = [
    ("GET", "/static/css/style.css", {}, 200, STATIC, 40),
    ("GET", "/static/app.js", {}, 200, STATIC, 20),
    ("HEAD", "/static/app.js", {}, 200, STATIC, 10),
    ("GET", "/static/app.js", {"If-None-Match": ETAG}, 304, STATIC, 10),
    ("GET", "/downloads/prices.csv", {}, 200, "/downloads/prices.csv", 30),
    ("GET", "/downloads/prices.csv", {"Range": "bytes=0-99"}, 206, "/downloads/prices.csv", 20),
    ("GET", "/downloads/files/prices.csv", {}, 200, "/downloads/files/<path:name>", 20),
    ("GET", "/downloads/receipt", {}, 200, "/downloads/receipt", 20),
    ("GET", "/products/export", {}, 200, "/products/export", 20),
    ("GET", "/products/1", {}, 200, "/products/<int:product_id>", 20),
]


def _interleaved() -> list[tuple[str, str, dict[str, str], int, str, int]]:
    """TRAFFIC round-robin, so that each recycled worker serves a mix of bodies."""
    queues = [[item] * item[5] for item in TRAFFIC]
    schedule = []
    while any(queues):
        for queue in queues:
            if queue:
                schedule.append(queue.pop())
    return schedule


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_recycled_workers_serving_files_keep_exact_totals(tmp_path: Path) -> None:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    _user_database(multiproc / "app.db")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    args = [
        "-c",
        "python:flask_appmetrics.gunicorn",
        "-w",
        "2",
        "--max-requests",
        "10",
        "--max-requests-jitter",
        "0",
        "--graceful-timeout",
        "5",
    ]
    server = Server(tmp_path, args, env)
    try:
        server.wait_workers(2)
        # The app's database survived gunicorn's start.
        assert _orders(multiproc / "app.db") == [(1, 9.99), (2, 19.5)]
        schedule = _interleaved()
        assert len(schedule) == 210
        expected: Counter[tuple[str, str, str]] = Counter()
        etag = server.request("GET", "/static/app.js").headers["ETag"]
        expected[("GET", STATIC, "200")] += 1
        for method, path, headers, status, endpoint, _ in schedule:
            sent = {k: etag if v == ETAG else v for k, v in headers.items()}
            response = server.request(method, path, **sent)
            assert response.status_code == status, (path, response.status_code)
            expected[(method, endpoint, str(status))] += 1

        restarts = server.log_text().count("Autorestarting worker")
        assert restarts >= 15, server.log_text()
        server.wait_workers(2)

        for k in range(4):
            samples = server.scrape()
            for (method, endpoint, status), count in expected.items():
                labels = {"method": method, "endpoint": endpoint, "status": status}
                assert _value(samples, "http_requests_total", **labels) == count, labels
            for method, endpoint in {(m, e) for m, e, _ in expected}:
                count = sum(n for (m, e, _), n in expected.items() if (m, e) == (method, endpoint))
                labels = {"method": method, "endpoint": endpoint}
                assert _value(samples, "http_request_duration_seconds_count", **labels) == count
                assert _value(samples, "http_requests_in_progress", **labels) == 0, labels
            scrapes = {"method": "GET", "endpoint": "/metrics", "status": "200"}
            assert _value(samples, "http_requests_total", **scrapes) == k
            # The scrape being served is the one request in progress.
            assert (
                _value(samples, "http_requests_in_progress", method="GET", endpoint="/metrics") == 1
            )
            health = server.request("GET", "/api/health").json()
            assert health["recent_errors_5min"] == 0

        # Files of workers that exited are folded: the directory holds the live workers'
        # files and a bounded archive, not three files per recycled worker.
        live = server.workers()
        names = [n for n in _files(multiproc) if n != "app.db"]
        leftovers = [n for n in names if not any(n.endswith(f"_{pid}.db") for pid in live)]
        assert len(leftovers) <= 8, (restarts, leftovers)
        assert _orders(multiproc / "app.db") == [(1, 9.99), (2, 19.5)]
    finally:
        server.stop()
    assert _orders(multiproc / "app.db") == [(1, 9.99), (2, 19.5)]


def test_a_restart_leaves_the_apps_database_alone(tmp_path: Path) -> None:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    _user_database(multiproc / "app.db")
    (multiproc / "README.txt").write_text("the app's notes\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    args = ["-c", "python:flask_appmetrics.gunicorn", "-w", "2", "--graceful-timeout", "5"]
    for run in range(2):  # a deploy: stop, start again on the same directory
        (tmp_path / str(run)).mkdir()
        server = Server(tmp_path / str(run), args, env)
        try:
            server.wait_workers(2)
            assert server.request("GET", "/products/1").status_code == 200
        finally:
            server.stop()
        assert _orders(multiproc / "app.db") == [(1, 9.99), (2, 19.5)]
        assert (multiproc / "README.txt").read_text() == "the app's notes\n"


def test_several_workers_without_multiprocess_mode_warn(tmp_path: Path) -> None:
    # The usual first deployment: no config module, no PROMETHEUS_MULTIPROC_DIR.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = Server(tmp_path, ["-w", "2", "--graceful-timeout", "5"], env)
    try:
        server.wait_workers(2)
        for _ in range(4):
            assert server.request("GET", "/products/1").status_code == 200
        health = server.request("GET", "/api/health").json()
    finally:
        server.stop()
    log = server.log_text()
    assert "PROMETHEUS_MULTIPROC_DIR" in log, log
    # The health figures say they are this worker's alone.
    told = {value for value in health.values() if isinstance(value, str)}
    assert told & {"process", "worker"}, health
