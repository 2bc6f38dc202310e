"""Draining on SIGTERM, with real servers: gunicorn with its config module, and the
development server (``app.run``).

During the drain ``/readyz`` answers 503 with the reason while every other route keeps
answering 200 and requests in flight finish; then the server stops as it would have, and
every request it answered is counted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests

from flask_appmetrics.metrics.multiprocess.setup import scrape_registry
from tests.support.gunicorn_cmd import GUNICORN, NO_CONTROL_SOCKET
from tests.support.gunicorn_server import (
    ROOT,
    WAIT_SECONDS,
    Blocked,
    Gunicorn,
    parse_samples,
    poll,
    sample_value,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow

ITEM = "/items/<int:item_id>"
BLOCK = "/block/<name>"


class Client:
    """GETs one server and counts what it answered, by endpoint and status."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answered: Counter[tuple[str, int]] = Counter()

    def get(self, path: str, endpoint: str) -> requests.Response:
        response = requests.get(self.base + path, timeout=WAIT_SECONDS)
        self.answered[(endpoint, response.status_code)] += 1
        return response

    def readyz(self) -> requests.Response:
        return self.get("/readyz", "/readyz")


def assert_draining(response: requests.Response) -> float:
    """*response* is ``/readyz`` during the drain; returns the seconds it says are left."""
    assert response.status_code == 503, response.text
    reason = response.json()["reason"]
    assert reason.startswith("draining: the server was told to stop (SIGTERM)"), reason
    left = re.search(r"stops serving in ([0-9.]+) s", reason)
    assert left is not None, reason
    return float(left.group(1))


def test_gunicorn_master_drains_then_shuts_down_gracefully(tmp_path: Path) -> None:
    drain = 5.0
    server = Gunicorn(tmp_path, env={"APPMETRICS_DRAIN_SECONDS": f"{drain:g}"})
    try:
        client = Client(server.base)
        assert client.readyz().status_code == 200
        for item in range(3):
            assert client.get(f"/items/{item}", ITEM).status_code == 200
        # The health families, served by the scraping worker, once each.
        samples = parse_samples(client.get("/metrics", "/metrics").text)
        assert sample_value(samples, "app_health_status", app_health_status="healthy") == 1.0
        assert sample_value(samples, "app_health_status", app_health_status="unhealthy") == 0.0
        before = Blocked(server, "before")  # in flight when SIGTERM arrives

        server.proc.send_signal(signal.SIGTERM)
        assert poll(lambda: client.readyz().status_code == 503)
        assert 0 < assert_draining(client.readyz()) <= drain
        # The master still accepts and the workers still serve.
        for item in range(5):
            assert client.get(f"/items/{item}", ITEM).status_code == 200
        during = Blocked(server, "during")  # accepted during the drain
        assert before.release() == 200
        assert_draining(client.readyz())  # all of the above happened within the drain
        assert server.proc.poll() is None

        # The drain ends with gunicorn's own graceful shutdown, which lets the request
        # still in flight finish.
        wait_for("the drain to end", lambda: "Handling signal: term" in log_of(tmp_path))
        assert during.release() == 200
        server.proc.wait(timeout=WAIT_SECONDS)
        assert server.proc.returncode == 0
        log = log_of(tmp_path)
        assert "SIGTERM received: draining for 5 s" in log
        assert log.index("drain over") < log.index("Handling signal: term")
    finally:
        server.stop()

    client.answered[(BLOCK, 200)] += 2
    # Every request answered is counted, the drained ones included: read from the
    # workers' files once gunicorn is gone.
    registry = scrape_registry(str(server.multiproc))
    counted = {
        (endpoint, status): registry.get_sample_value(
            "http_requests_total", {"method": "GET", "endpoint": endpoint, "status": str(status)}
        )
        for endpoint, status in client.answered
    }
    assert counted == {key: float(n) for key, n in client.answered.items()}
    assert client.answered[("/readyz", 503)] >= 3
    assert client.answered[(ITEM, 200)] == 8
    in_progress = registry.get_sample_value(
        "http_requests_in_progress", {"method": "GET", "endpoint": BLOCK}
    )
    assert not in_progress


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "gunicorn.log").read_text()


def test_gunicorn_without_drain_stops_at_once(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path, workers=1)
    try:
        assert requests.get(server.base + "/readyz", timeout=WAIT_SECONDS).status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=WAIT_SECONDS)
        assert "draining" not in log_of(tmp_path)
    finally:
        server.stop()


def test_a_bad_drain_value_stops_gunicorn_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "APPMETRICS_DRAIN_SECONDS": "soon", "TEST_SIGNAL_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [GUNICORN, "-c", "python:flask_appmetrics.gunicorn", *NO_CONTROL_SOCKET]
    result = subprocess.run(
        [*command, "-b", "127.0.0.1:0", "tests.support.hosts.gunicorn_app:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert result.returncode != 0
    assert "APPMETRICS_DRAIN_SECONDS: (environment variable) expected a number" in result.stderr


def test_development_server_drains_then_stops(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    env = {
        **os.environ,
        "APPMETRICS_DRAIN_SECONDS": "3",
        "TEST_SIGNAL_DIR": str(signals),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    program = "from tests.support.hosts.gunicorn_app import app\napp.run(port=0)\n"
    output = tmp_path / "server.log"
    with output.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for("the server to listen", lambda: "Running on http://" in output.read_text())
        port = re.search(r"Running on http://127\.0\.0\.1:(\d+)", output.read_text())
        assert port is not None
        client = Client(f"http://127.0.0.1:{port.group(1)}")
        assert client.readyz().status_code == 200
        in_flight = _Blocker(client, signals)

        proc.send_signal(signal.SIGTERM)
        assert poll(lambda: client.readyz().status_code == 503)
        assert 0 < assert_draining(client.readyz()) <= 3.0
        for item in range(3):
            assert client.get(f"/items/{item}", ITEM).status_code == 200
        assert in_flight.release() == 200
        # Counted as answered, all of them: the server's own /metrics says so.
        metrics = requests.get(client.base + "/metrics", timeout=WAIT_SECONDS)
        assert_draining(client.readyz())  # still within the drain
        samples = parse_samples(metrics.text)
        for (endpoint, status), n in client.answered.items():
            value = sample_value(
                samples, "http_requests_total", method="GET", endpoint=endpoint, status=str(status)
            )
            if endpoint == "/readyz" and status == 503:
                assert value is not None
                assert value <= n  # the last readyz came after the scrape
            else:
                assert value == n, (endpoint, status)
        # Then the process ends by the signal, as without draining.
        assert proc.wait(timeout=WAIT_SECONDS) == -signal.SIGTERM
    finally:
        stop_process(proc)


class _Blocker:
    """``/block/<name>`` held open on the development server until released."""

    def __init__(self, client: Client, signals: Path) -> None:
        self.signals = signals
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()
        wait_for("the request to start", (signals / "started-dev").exists)

    def _run(self, client: Client) -> None:
        self.status = client.get("/block/dev", BLOCK).status_code

    def release(self) -> int | None:
        (self.signals / "release-dev").touch()
        self.thread.join(WAIT_SECONDS)
        return self.status
