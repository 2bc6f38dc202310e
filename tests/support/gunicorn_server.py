"""Start real gunicorn on a socket bound here (port 0, 127.0.0.1) for one test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests._gunicorn import GUNICORN, NO_CONTROL_SOCKET

ROOT = Path(__file__).resolve().parent.parent
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
