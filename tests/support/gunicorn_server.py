"""Start real gunicorn on a socket bound here (port 0, 127.0.0.1) for one test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gunicorn_cmd import GUNICORN, NO_CONTROL_SOCKET

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 30.0


def poll(predicate: Callable[[], bool]) -> bool:
    """Poll *predicate* until true (``True``) or for at most ``WAIT_SECONDS`` (``False``)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def wait_for(what: str, predicate: Callable[[], bool]) -> None:
    """Poll *predicate* until true; bounded, never a timed assertion."""
    if not poll(predicate):
        raise AssertionError(f"gave up waiting for {what}")


class Server:
    """``gunicorn <args> <app>`` with its output in ``tmp/gunicorn.log``."""

    def __init__(self, tmp: Path, app: str, *args: str, env: dict[str, str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.log_path = tmp / "gunicorn.log"
        fd = self.sock.fileno()
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [GUNICORN, "-b", f"fd://{fd}", *NO_CONTROL_SOCKET, *args, app],
                cwd=ROOT,
                env={**os.environ, **env},
                pass_fds=(fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        assert self.proc.poll() is None, f"gunicorn exited:\n{self.log()}"
        return requests.get(self.base + path, headers=headers, timeout=WAIT_SECONDS)

    def head(self, path: str) -> requests.Response:
        return requests.head(self.base + path, timeout=WAIT_SECONDS)

    def wait_ready(self) -> None:
        def answers() -> bool:
            assert self.proc.poll() is None, f"gunicorn exited:\n{self.log()}"
            try:
                return requests.get(self.base + "/livez", timeout=5.0).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # still booting
                return False

        wait_for("gunicorn to answer", answers)

    def stop(self) -> None:
        stop_process(self.proc, self.sock)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a /metrics page, keyed by name and labels; a series twice fails."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples


def stop_process(proc: subprocess.Popen[bytes], *closing: Any) -> None:
    """SIGTERM *proc* (a server), SIGKILL it if it outlives the wait, then close *closing*
    (its socket, its log)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for each in closing:
        each.close()


class Gunicorn:
    """A gunicorn master on a socket we bound ourselves (port 0: no port race)."""

    def __init__(
        self,
        tmp: Path,
        *,
        workers: int = 3,
        multiproc: Path | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        config: str = "python:flask_appmetrics.gunicorn",
    ) -> None:
        self.signals = tmp / "signals"
        self.signals.mkdir()
        self.multiproc = multiproc if multiproc is not None else tmp / "multiproc"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc),
            "TEST_SIGNAL_DIR": str(self.signals),
            **(env or {}),
        }
        fd = self.sock.fileno()
        self.log = (tmp / "gunicorn.log").open("w")
        self.proc = subprocess.Popen(
            [
                GUNICORN,
                "-c",
                config,
                "-w",
                str(workers),
                "-b",
                f"fd://{fd}",
                "--graceful-timeout",
                "5",
                *NO_CONTROL_SOCKET,
                *args,
                "tests.support.hosts.gunicorn_app:app",
            ],
            cwd=ROOT,
            env=env,
            pass_fds=(fd,),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_workers(workers)

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(p) for p in children.read_text().split()}
        except FileNotFoundError:
            return set()

    def wait_workers(self, count: int, *, without: int | None = None) -> set[int]:
        assert self.proc.poll() is None, "gunicorn exited"
        wait_for(
            f"{count} workers",
            lambda: len(self.workers()) == count and without not in self.workers(),
        )
        return self.workers()

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(self.base + path, headers=headers, timeout=WAIT_SECONDS)

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200
        return parse_samples(response.text)

    def stop(self) -> None:
        stop_process(self.proc, self.sock, self.log)


class Blocked:
    """A request to ``/block/<name>`` held open by its worker until released."""

    def __init__(self, server: Gunicorn, name: str, query: str = "") -> None:
        self.server = server
        self.name = name
        self.status: int | None = None
        self.failed = False
        self.query = query
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        started = server.signals / f"started-{name}"
        wait_for(f"{name} to start", started.exists)
        self.pid = int(started.read_text())

    def _run(self) -> None:
        try:
            self.status = self.server.get(f"/block/{self.name}{self.query}").status_code
        except requests.ConnectionError:
            self.failed = True

    def release(self) -> int | None:
        (self.server.signals / f"release-{self.name}").touch()
        self.thread.join(WAIT_SECONDS)
        return self.status


def sample_value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
