"""Health over real HTTP: a threaded werkzeug server on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context
from werkzeug.serving import BaseWSGIServer, make_server

from flask_appmetrics import FlaskMetrics
from tests.support.apps import AppFactory


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def server(app_factory: AppFactory) -> Iterator[tuple[Flask, str]]:
    app = app_factory()

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "down", 500

    @app.get("/chunks")
    def chunks() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))

    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def fetch(url: str, **headers: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, response.headers.get_content_type(), raw
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def health(base: str, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, raw = fetch(f"{base}/api/health", **headers)
    body = json.loads(raw)
    assert isinstance(body, dict)
    return status, body


def test_requests_from_8_client_threads_are_counted_exactly(
    server: tuple[Flask, str],
) -> None:
    _, base = server
    failures: list[int] = []

    def work() -> None:
        for i in range(25):
            status, _, _ = fetch(f"{base}/fail" if i % 5 == 0 else f"{base}/items/{i}")
            if status not in (200, 500):
                failures.append(status)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    status, body = health(base)
    assert (body["recent_requests_5min"], body["recent_errors_5min"]) == (200, 40)
    assert body["error_ratio_5min"] == 0.2
    assert (status, body["status"]) == (200, "degraded")
    assert body["concurrent_users"] == 1  # one client address and agent


def test_a_hung_check_answers_503_over_http(
    server: tuple[Flask, str], metrics: FlaskMetrics, release: threading.Event
) -> None:
    _, base = server
    metrics.add_health_check("database", release.wait, timeout=0.05)
    status, body = health(base)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["checks"]["database"]["error"] == "timeout"
    status, content_type, raw = fetch(f"{base}/readyz", Accept="application/health+json")
    assert (status, content_type) == (503, "application/health+json")
    assert json.loads(raw)["status"] == "fail"
    assert fetch(f"{base}/livez")[0] == 200


def test_streamed_responses_are_recorded(server: tuple[Flask, str]) -> None:
    _, base = server
    status, _, raw = fetch(f"{base}/chunks", Authorization="Bearer streamer")
    assert (status, raw) == (200, b"ab")
    # A streamed request is recorded when the server closes the body, which may be just
    # after the client read its last chunk: wait (boundedly) for the server to get there.
    for _ in range(200):
        _, body = health(base)
        if body["recent_requests_5min"]:
            break
        threading.Event().wait(0.01)
    assert body["recent_requests_5min"] == 1
    assert body["concurrent_users"] == 1


def test_health_json_over_http(server: tuple[Flask, str]) -> None:
    _, base = server
    status, content_type, raw = fetch(f"{base}/api/health", Accept="application/health+json")
    assert (status, content_type) == (200, "application/health+json")
    assert json.loads(raw)["status"] == "pass"


def test_probes_stay_public_over_http_behind_jwt_required() -> None:
    """A load balancer probing a replica whose extension is guarded by flask-jwt-extended."""
    from flask_jwt_extended import JWTManager, jwt_required
    from prometheus_client import CollectorRegistry

    app = Flask("jwt_over_http")
    app.config["JWT_SECRET_KEY"] = "jwt-signing-key-for-tests-0123456789abcdef0123456789"
    JWTManager(app)
    FlaskMetrics(app, registry=CollectorRegistry(), auth=jwt_required())
    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        status, body = health(base)
        assert (status, body["status"]) == (200, "healthy")
        assert set(body) == {
            "status",
            "recent_errors_5min",
            "avg_response_time_ms",
            "concurrent_users",
        }
        status, _, raw = fetch(f"{base}/readyz")
        assert (status, json.loads(raw)) == (200, {"status": "pass"})
        for path in ("/metrics", "/status"):
            status, content_type, raw = fetch(f"{base}{path}")
            assert (status, content_type) == (401, "application/json")
            assert json.loads(raw) == {"msg": "Missing Authorization Header"}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
