"""Real uWSGI (from the ``uwsgi`` package), three workers recycled every 20 requests.

uWSGI has no hook like gunicorn's ``child_exit``: the scrape finds exited workers by their
pid, folds their counters into the archive and drops their live gauges, so the directory
stays as small as the number of live workers and a worker killed mid-request leaves no
stuck ``http_requests_in_progress``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from flask_appmetrics.metrics.multiprocess.files import parse_name
from tests.support.gunicorn_server import (
    WAIT_SECONDS,
    Blocked,
    Samples,
    parse_samples,
    sample_value,
    stop_process,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
UWSGI_BIN = str(Path(sys.executable).with_name("uwsgi"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(UWSGI_BIN, os.X_OK),
        reason="uwsgi not installed (the uwsgi dependency group; it builds from source with a "
        "C compiler and the Python headers)",
    ),
]
ITEMS = "/items/<int:item_id>"
BLOCK = "/block/<name>"


class UWSGI:
    """A uWSGI master on a socket we bound ourselves (port 0: no port race)."""

    def __init__(self, tmp: Path, *, processes: int = 3, max_requests: int = 20) -> None:
        self.signals = tmp / "signals"
        self.signals.mkdir()
        self.multiproc = tmp / "multiproc"
        self.multiproc.mkdir()  # empty, before the server starts (the recipe says so)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        fd = self.sock.fileno()
        self.log = (tmp / "uwsgi.log").open("w")
        self.proc = subprocess.Popen(
            [
                UWSGI_BIN,
                "--http-socket",
                f"fd://{fd}",
                "--master",
                "--processes",
                str(processes),
                "--max-requests",
                str(max_requests),
                # uWSGI recycles a worker only after it has run 10 s by default.
                "--min-worker-lifetime",
                "0",
                "--module",
                "tests.support.hosts.gunicorn_app:app",
                "--home",
                sys.prefix,
                "--chdir",
                str(ROOT),
                "--need-app",
                "--die-on-term",
                "--disable-logging",
            ],
            env={
                **os.environ,
                "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc),
                "TEST_SIGNAL_DIR": str(self.signals),
            },
            pass_fds=(fd,),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.processes = processes
        try:
            self.wait_workers()
        except BaseException:
            self.stop()
            raise

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(p) for p in children.read_text().split()}
        except FileNotFoundError:
            return set()

    def wait_workers(self, *, without: int | None = None) -> set[int]:
        assert self.proc.poll() is None, "uwsgi exited"
        wait_for(
            f"{self.processes} workers",
            lambda: len(self.workers()) == self.processes and without not in self.workers(),
        )
        return self.workers()

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=WAIT_SECONDS)

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200
        return parse_samples(response.text)

    def metric_pids(self) -> set[int]:
        pids = set()
        for p in self.multiproc.iterdir():
            parsed = parse_name(p.name)
            if parsed is not None:
                pids.add(parsed.pid)
        return pids

    def stop(self) -> None:
        stop_process(self.proc, self.sock, self.log)


@pytest.fixture
def uwsgi(tmp_path: Path) -> UWSGI:
    server = UWSGI(tmp_path)
    yield server  # type: ignore[misc]
    server.stop()


def test_recycled_and_killed_workers_are_folded_at_scrape(uwsgi: UWSGI) -> None:
    served_by = set()
    for i in range(200):
        response = uwsgi.get(f"/items/{i}")
        assert response.status_code == 200
        served_by.add(response.json()["pid"])
    assert len(served_by) >= 6  # --max-requests 20 recycled them

    # Killed in the middle of a request: its in-progress gauge must not stay at 1.
    blocked = Blocked(uwsgi, "k")  # type: ignore[arg-type]
    samples = uwsgi.scrape()
    assert sample_value(samples, "http_requests_in_progress", method="GET", endpoint=BLOCK) == 1
    os.kill(blocked.pid, signal.SIGKILL)
    uwsgi.wait_workers(without=blocked.pid)
    assert blocked.release() is None

    def folded() -> bool:
        # Each scrape folds the workers that have exited by then; a scrape can itself be a
        # worker's last request, so look again until the directory has caught up.
        uwsgi.scrape()
        return uwsgi.metric_pids() <= uwsgi.workers() | {uwsgi.proc.pid}

    wait_for("exited workers' files to be folded", folded)
    files = [p.name for p in uwsgi.multiproc.iterdir()]
    # Three workers and the master (which loaded the app), five files at most each, plus
    # the archive and its lock.
    assert len(files) <= 4 * 5 + 2, sorted(files)
    for _ in range(3):
        samples = uwsgi.scrape()
        labels = {"method": "GET", "endpoint": ITEMS}
        assert sample_value(samples, "http_requests_total", **labels, status="200") == 200
        assert sample_value(samples, "http_request_duration_seconds_count", **labels) == 200
        assert (
            sample_value(samples, "http_requests_in_progress", method="GET", endpoint=BLOCK) or 0
        ) == 0
        assert (sample_value(samples, "http_requests_in_progress", **labels) or 0) == 0
