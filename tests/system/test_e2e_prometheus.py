"""End to end: the example app under gunicorn, scraped by a real Prometheus with our rules.

gunicorn runs ``example_app:create_app()`` with two workers and flask-appmetrics' gunicorn
config (prometheus_client's multiprocess mode), on a socket the test bound itself, with a
redis-server of its own for the quota windows the workers share. Debian's
``prometheus`` scrapes it every second and evaluates ops/prometheus/rules every second.
The test drives traffic (including forced LLM failures that open the circuit breakers),
then polls Prometheus' HTTP API until the raw series, the recording rules and a pending
alert appear. Every wait is bounded; both servers are stopped whatever happens.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from example_app import traffic
from tests.support.gunicorn_cmd import GUNICORN, NO_CONTROL_SOCKET
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "ops" / "prometheus" / "rules").glob("*.yml"))
WAIT_SECONDS = 60.0
JOB = "example"

prometheus = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus is None or shutil.which("redis-server") is None,
        reason="prometheus or redis-server not installed (scripts/system-deps.sh does)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def wait_for(what: str, probe: Callable[[], Any], log: Path | None = None) -> Any:
    """Poll *probe* until it returns something truthy; bounded by WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.5)
    detail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"gave up waiting for {what}\n{detail}")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    try:
        server.start()
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def example_server(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """The example app under gunicorn (2 workers, multiprocess metrics); its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "SENTRY_DSN")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "multiproc")
    # The example reads APPMETRICS_* from its environment (twelve-factor style).
    env["APPMETRICS_REDIS_URL"] = redis_url
    # Room for every LLM call of the test: the forced failures must reach the breaker.
    env["APPMETRICS_QUOTA_RPM"] = "1000"
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                GUNICORN,
                "-c",
                "python:flask_appmetrics.gunicorn",
                "-w",
                "2",
                "-b",
                f"fd://{sock.fileno()}",
                "--graceful-timeout",
                "5",
                *NO_CONTROL_SOCKET,
                "example_app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            pass_fds=(sock.fileno(),),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert traffic.wait_until_up(base, timeout=WAIT_SECONDS), log_path.read_text()
        yield base
    finally:
        stop(proc)
        sock.close()


class Prometheus:
    """A Prometheus server scraping *target* every second, with the ops rules loaded."""

    def __init__(self, tmp: Path, target: str) -> None:
        assert prometheus is not None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        rule_files = "\n".join(f"  - {path}" for path in RULES)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n{rule_files}\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
            f'      - targets: ["{target}"]\n'
        )
        self.log_path = tmp / "prometheus.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
        try:
            return requests.get(f"{self.base}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base}/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The first sample's value of an instant query, or ``None`` when empty or NaN."""
        result = self.query(promql)
        if not result:
            return None
        number = float(result[0]["value"][1])
        return None if math.isnan(number) else number


@pytest.fixture
def prom(tmp_path: Path, example_server: str) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, example_server.removeprefix("http://"))
    try:
        wait_for("Prometheus to be ready", server.ready, server.log_path)
        yield server
    finally:
        stop(server.proc)


def test_prometheus_scrapes_the_example_and_evaluates_the_rules(
    example_server: str, prom: Prometheus
) -> None:
    wait_for("the first scrape", lambda: prom.value(f'up{{job="{JOB}"}}') == 1, prom.log_path)

    statuses = traffic.run(example_server, 120, concurrency=4, seed=1)
    assert sum(statuses.values()) == 120
    assert statuses[200] > 0
    posts = sum(1 for call in traffic.plan(120, seed=1) if call.method == "POST")
    # Forced failures: each worker's breaker opens after 5 consecutive failures.
    for _ in range(30):
        failed = traffic.send(
            example_server, traffic.Call("POST", "/api/subtopics?fail=1", {"topic": "x"})
        )
        assert failed in (502, 503)

    # Raw series, summed over both workers: every POST was counted.
    def api_posts() -> float | None:
        return prom.value(f'sum(http_requests_total{{job="{JOB}",method="POST"}})')

    wait_for("the API requests to be scraped", lambda: api_posts() == posts + 30, prom.log_path)
    assert (prom.value('sum(gemini_api_calls_total{status="success"})') or 0) > 0
    assert (prom.value('sum(cache_operations_total{operation="get",result="hit"})') or 0) > 0
    assert (prom.value("sum(subtopics_generated_total)") or 0) > 0

    # Recording rules computed from those series.
    rate = wait_for(
        "job:http_requests:rate5m",
        lambda: prom.value(f'job:http_requests:rate5m{{job="{JOB}"}}'),
        prom.log_path,
    )
    assert rate > 0
    errors = wait_for(
        "job:http_request_errors:ratio_rate5m > 0",
        lambda: prom.value(f'job:http_request_errors:ratio_rate5m{{job="{JOB}"}}'),
    )
    assert 0 < errors < 1
    hit_ratio = wait_for(
        "job:cache_hit:ratio_rate5m",
        lambda: prom.value(f'job:cache_hit:ratio_rate5m{{job="{JOB}"}}'),
    )
    assert 0 < hit_ratio < 1
    # Quota usage over its limit: the workers count into Redis, so the gauges exist.
    quota = wait_for(
        "job_limit:quota_usage:ratio{limit=rpm}",
        lambda: prom.value(f'job_limit:quota_usage:ratio{{job="{JOB}",limit="rpm"}}'),
    )
    assert 0 < quota <= 1
    wait_for(
        "job:gemini_api_cost_usd_per_hour:rate5m",
        lambda: prom.value(f'job:gemini_api_cost_usd_per_hour:rate5m{{job="{JOB}"}}'),
    )
    state = wait_for(
        "the breaker to be open",
        lambda: (
            prom.value(f'job_service:circuit_breaker_state:max{{job="{JOB}",service="gemini"}}')
            == 2
        ),
    )
    assert state
    # And an alert on it, pending for its "for: 1m".
    alerts = wait_for(
        "FlaskAppCircuitBreakerOpen to be pending",
        lambda: prom.query('ALERTS{alertname="FlaskAppCircuitBreakerOpen"}'),
    )
    assert alerts[0]["metric"]["service"] == "gemini"
    assert alerts[0]["metric"]["alertstate"] in {"pending", "firing"}
