"""A real Prometheus scrapes a token-protected ``/metrics``: with the token it gets the
page, without it the target is down (401) and no sample of ours is stored."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from flask_appmetrics import FlaskMetrics

TOKEN = "prometheus-scrape-token-0123456789"
WAIT_SECONDS = 60.0

prometheus = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(prometheus is None, reason="prometheus not installed (system-deps.sh)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def protected_app() -> Iterator[str]:
    """A Flask app with a bearer token on /metrics, served in a thread; its host:port."""
    app = Flask("protected")
    app.config["APPMETRICS_AUTH_TOKEN"] = TOKEN
    FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def prometheus_url(tmp_path: Path, protected_app: str) -> Iterator[str]:
    assert prometheus is not None
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: with_token
    authorization:
      credentials: {TOKEN}
    static_configs: [{{targets: ["{protected_app}"]}}]
  - job_name: without_token
    static_configs: [{{targets: ["{protected_app}"]}}]
"""
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _query(base: str, promql: str, *, strict: bool = False) -> list[dict[str, Any]]:
    """Prometheus' answer to *promql*; ``[]`` while it is starting, unless *strict*."""
    try:
        response = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    except requests.ConnectionError:
        if strict:
            raise
        return []
    if strict:
        response.raise_for_status()
    elif response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_with_the_token_and_is_refused_without(prometheus_url: str) -> None:
    def up(job: str) -> float | None:
        result = _query(prometheus_url, f'up{{job="{job}"}}')
        return float(result[0]["value"][1]) if result else None

    _wait_for("both targets scraped", lambda: up("with_token") is not None)
    _wait_for("both targets scraped", lambda: up("without_token") is not None)
    assert up("with_token") == 1
    assert up("without_token") == 0
    ours = _wait_for(
        "our series from the authorised scrape",
        lambda: _query(prometheus_url, 'http_requests_total{endpoint="/metrics"}'),
    )
    assert {series["metric"]["job"] for series in ours} == {"with_token"}
    # The refused scrapes were measured too, as 401s, and reached Prometheus through the
    # authorised job.
    refused = _wait_for(
        "the 401s counted",
        lambda: _query(prometheus_url, 'http_requests_total{endpoint="/metrics",status="401"}'),
    )
    assert float(refused[0]["value"][1]) >= 1
    refused_job = '{job="without_token", __name__!~"up|scrape_.*"}'
    assert _query(prometheus_url, refused_job, strict=True) == []
