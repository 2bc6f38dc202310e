"""Several worker processes without prometheus_client's multiprocess mode are not silent:
each worker logs a warning at its first request, and ``/api/health`` says whose figures it
shows (``scope``)."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.recording import request_hooks as instrumentation
from tests.support.gunicorn_server import Server
from tests.support.redis_server import RedisServer

WARNING = re.compile(r"flask-appmetrics: worker (\d+) is one of several worker processes")
FIX = "-c python:flask_appmetrics.gunicorn"


def _environ_without_multiproc_dir(tmp_path: Path) -> dict[str, str]:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    static = tmp_path / "static"
    static.mkdir()
    (static / "file-0.css").write_text("p {}\n")
    signals = tmp_path / "signals"
    signals.mkdir()
    return {"TEST_STATIC_DIR": str(static), "TEST_SIGNAL_DIR": str(signals)}


@pytest.mark.slow
def test_gunicorn_with_two_workers_and_no_multiprocess_mode_warns(tmp_path: Path) -> None:
    env = _environ_without_multiproc_dir(tmp_path)
    server = Server(tmp_path, "tests.support.hosts.gunicorn_files_app:app", "-w", "2", env=env)
    try:
        server.wait_ready()
        for _ in range(20):
            assert server.get("/export").status_code == 200
        body = server.get("/api/health").json()
        assert body["scope"] == "process"
    finally:
        server.stop()
    log = server.log()
    warned = WARNING.findall(log)
    # Each worker that served a request warned once (its first request), never again.
    assert 1 <= len(warned) <= 2
    assert len(set(warned)) == len(warned)
    assert FIX in log
    assert "PROMETHEUS_MULTIPROC_DIR" in log


@pytest.mark.slow
def test_gunicorn_with_one_worker_does_not_warn(tmp_path: Path) -> None:
    env = _environ_without_multiproc_dir(tmp_path)
    server = Server(tmp_path, "tests.support.hosts.gunicorn_files_app:app", "-w", "1", env=env)
    try:
        server.wait_ready()
        assert server.get("/export").status_code == 200
    finally:
        server.stop()
    assert not WARNING.search(server.log())


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new worker process: nothing warned yet."""
    monkeypatch.setattr(instrumentation, "_warned_pid", None)


def _serve(app: Flask, *, multiprocess: bool) -> None:
    environ = EnvironBuilder(path="/ping").get_environ()
    environ["wsgi.multiprocess"] = multiprocess
    body, status, _ = run_wsgi_app(app, environ)
    b"".join(body)
    body.close()  # type: ignore[attr-defined]
    assert status.startswith("200")


def _app(name: str) -> Flask:
    app = Flask(name)

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    FlaskMetrics(app, registry=CollectorRegistry())
    return app


@pytest.mark.usefixtures("fresh_process")
def test_a_multiprocess_server_is_warned_about_once_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_appmetrics")
    first, second = _app("first"), _app("second")
    for _ in range(3):
        _serve(first, multiprocess=True)
        _serve(second, multiprocess=True)
    messages = [r.getMessage() for r in caplog.records if WARNING.search(r.getMessage())]
    assert len(messages) == 1
    assert f"worker {os.getpid()} " in messages[0]
    assert "PROMETHEUS_MULTIPROC_DIR" in messages[0]
    assert FIX in messages[0]


@pytest.mark.usefixtures("fresh_process")
def test_a_single_process_server_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_appmetrics")
    app = _app("single")
    for _ in range(3):
        _serve(app, multiprocess=False)
    assert not [r for r in caplog.records if WARNING.search(r.getMessage())]


def test_health_says_whose_figures_it_shows(redis_server: RedisServer) -> None:
    local = _app("local")
    assert local.test_client().get("/api/health").get_json()["scope"] == "process"

    shared = Flask("shared")
    shared.config.update(
        APPMETRICS_REDIS_URL=redis_server.url,
        APPMETRICS_REDIS_PREFIX="scope-test",
        APPMETRICS_REDIS_RETRY_SECONDS=0.0,
    )
    FlaskMetrics(shared, registry=CollectorRegistry())
    client = shared.test_client()
    assert client.get("/api/health").get_json()["scope"] == "shared"
    redis_server.kill()
    # Redis away: the figures are this process's local windows, and say so.
    body = client.get("/api/health").get_json()
    assert body["scope"] == "process"
    assert body["checks"]["redis"]["status"] == "fail"
    redis_server.start()
    # Back within a few seconds (the first call may still time out on a loaded machine).
    deadline = time.monotonic() + 5.0
    while client.get("/api/health").get_json()["scope"] != "shared":
        assert time.monotonic() < deadline, "the shared windows did not come back"
        time.sleep(0.1)
