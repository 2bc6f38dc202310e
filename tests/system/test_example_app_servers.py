"""The example app with real servers: ``python -m example_app`` serving and driving its own
traffic, and its cache on a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from example_app import create_app, traffic
from flask_appmetrics import FlaskMetrics
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_python_m_example_app_serves_and_drives_traffic(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "SENTRY_DSN")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # A DSN nothing listens on (port 9, on this machine): Sentry starts, sends nowhere.
    env["SENTRY_DSN"] = "http://public@127.0.0.1:9/1"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "example_app", "--port", str(port), "--traffic", "40"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        assert traffic.wait_until_up(base, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "traffic done" not in log.read_text():
            time.sleep(0.2)
        text = log.read_text()
        assert "traffic done" in text, text
        # The original service's "Expected output" of its start, in its order.
        startup_lines = (
            "All required environment variables validated",
            "Prometheus metrics initialized successfully",
            "Metrics available at /metrics endpoint",
            "Sentry error tracking initialized",
            f"Running on http://127.0.0.1:{port}",
        )
        positions = [text.index(line) for line in startup_lines]
        assert positions == sorted(positions), text
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            page = response.read().decode()
        total = sum(
            sample.value
            for family in text_string_to_metric_families(page)
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels["endpoint"] != "/metrics"
        )
        assert total >= 40
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")
def test_redis_cache_layer(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        registry = CollectorRegistry()
        ext = FlaskMetrics(registry=registry)
        app = create_app({"TESTING": True, "EXAMPLE_REDIS_URL": server.url}, extension=ext)
        assert app.config["CACHE_TYPE"] == "RedisCache"
        client = app.test_client()
        for _ in range(3):
            assert client.post("/api/subtopics", json={"topic": "redis"}).status_code == 200
        layer = {"layer": "redis", "operation": "get"}
        assert (
            registry.get_sample_value("cache_layer_operations_total", {**layer, "result": "miss"})
            == 1
        )
        assert (
            registry.get_sample_value("cache_layer_operations_total", {**layer, "result": "hit"})
            == 2
        )
        assert (
            registry.get_sample_value(
                "cache_operations_total", {"operation": "get", "result": "hit"}
            )
            == 2
        )
        assert server.client().dbsize() >= 1  # the value really is in Redis
    finally:
        server.kill()
