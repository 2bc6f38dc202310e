"""Health that never fails its callers: broken windows, the users gauge, per-app checks."""

from __future__ import annotations

import ast
import importlib.util
import logging
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import flask_appmetrics
from flask_appmetrics import FlaskMetrics, get_health_status
from flask_appmetrics.health.monitor import HealthMonitor
from flask_appmetrics.health.windows import RequestCounts
from tests.support.apps import AppFactory

INTERNAL = "flask_appmetrics_internal_errors_total"


def monitor_of(app: Flask) -> HealthMonitor:
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.health is not None
    return state.health


def internal(registry: CollectorRegistry, component: str) -> float | None:
    return registry.get_sample_value(INTERNAL, {"component": component})


class BrokenRequests:
    def record(self, error: bool) -> None:
        pass

    def counts(self) -> RequestCounts:
        raise RuntimeError("window backend down")


class BrokenUsers:
    def touch(self, identity: str) -> None:
        pass

    def count(self) -> int:
        raise RuntimeError("users backend down")


# -- the status page and get_health_status() with a broken window ----------------------------


@pytest.mark.parametrize(
    ("query", "accept"),
    [("", "text/html"), ("?format=json", "text/html"), ("", "application/json")],
    ids=["page", "format-json", "accept-json"],
)
def test_a_failing_status_page_is_a_503_never_a_500(
    app_factory: AppFactory,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    query: str,
    accept: str,
) -> None:
    app = app_factory()
    monitor_of(app).requests = BrokenRequests()
    response = app.test_client().get(f"/status{query}", headers={"Accept": accept})
    assert response.status_code == 503
    assert response.get_json() == {"status": "unhealthy", "error": "internal"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "window backend down" in caplog.text
    assert internal(registry, "status_page") == 1.0


def test_get_health_status_never_raises(
    app_factory: AppFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()
    monitor_of(app).requests = BrokenRequests()
    with app.app_context():
        status = get_health_status()
    assert status == {
        "status": "unhealthy",
        "error": "internal",
        "recent_errors_5min": 0,
        "avg_response_time_ms": 0.0,
        "concurrent_users": 0,
    }
    assert "window backend down" in caplog.text
    assert internal(registry, "health") == 1.0
    # Outside an app context too (the latest app's).
    assert get_health_status()["status"] == "unhealthy"
    assert internal(registry, "health") == 2.0


# -- concurrent_users never fails a scrape -----------------------------------------------------


def test_a_failing_users_window_is_skipped_not_the_scrape(
    app_factory: AppFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    fine, broken = app_factory(), app_factory()
    client = fine.test_client()
    client.get("/echo", headers={"Authorization": "Bearer a"})
    client.get("/echo", headers={"Authorization": "Bearer b"})
    monitor_of(broken).users = BrokenUsers()
    with caplog.at_level(logging.ERROR):
        response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert families["concurrent_users"].samples[0].value == 2.0
    assert "users backend down" in caplog.text
    # Reading the counter collects the registry, so the gauge fails once more each time.
    before = internal(registry, "concurrent_users")
    assert before is not None
    assert before >= 1.0
    assert internal(registry, "concurrent_users") == before + 1.0
    # A plain registry collection (what any exporter does) survives it too.
    assert b"concurrent_users 2.0" in generate_latest(registry)


def test_one_users_window_shared_by_apps_counts_once(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    first, second = app_factory(), app_factory()
    shared = monitor_of(first).users
    monitor_of(second).users = shared
    first.test_client().get("/echo", headers={"Authorization": "one"})
    second.test_client().get("/echo", headers={"Authorization": "two"})
    assert registry.get_sample_value("concurrent_users") == 2.0


# -- per-app checks ----------------------------------------------------------------------------


def test_per_app_checks_run_for_their_app_only(
    metrics: FlaskMetrics, app_factory: AppFactory
) -> None:
    first, second = app_factory(), app_factory()
    monitor_of(first).add_check("queue", lambda: False, critical=False)
    body = first.test_client().get("/api/health").get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["queue"]["error"] == "returned False"
    ready = first.test_client().get("/readyz")
    assert (ready.status_code, ready.get_json()["status"]) == (200, "warn")
    assert "queue" in ready.get_json()["checks"]
    with first.app_context():
        assert get_health_status()["checks"]["queue"]["status"] == "fail"
    assert "queue" not in second.test_client().get("/api/health").get_json()["checks"]
    monitor_of(first).add_check("queue", lambda: False, critical=True)
    assert first.test_client().get("/readyz").status_code == 503
    monitor_of(first).remove_check("queue")
    assert first.test_client().get("/readyz").get_json() == {"status": "pass", "checks": {}}


def test_a_per_app_check_replaces_the_shared_one_of_its_name(
    metrics: FlaskMetrics, app_factory: AppFactory
) -> None:
    metrics.add_health_check("database", lambda: False, critical=True)
    first, second = app_factory(), app_factory()
    monitor_of(first).add_check("database", lambda: True)
    checks = first.test_client().get("/readyz").get_json()["checks"]
    assert list(checks) == ["database"]
    assert checks["database"]["status"] == "pass"
    assert second.test_client().get("/readyz").status_code == 503


def test_bad_per_app_checks_are_refused(app: Flask) -> None:
    monitor = monitor_of(app)
    with pytest.raises(TypeError):
        monitor.add_check("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        monitor.add_check("", lambda: True)


# -- layering ------------------------------------------------------------------------------------


def _imported_modules(module: str) -> set[str]:
    """Absolute names of the modules *module* imports anywhere, lazily inside a function too."""
    root = Path(flask_appmetrics.__file__).parent
    path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    package = module.rpartition(".")[0]
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            names.add(importlib.util.resolve_name(relative, package) if node.level else relative)
    return names


@pytest.mark.parametrize(
    "module",
    [
        "flask_appmetrics.integrations.redis.windows",
        "flask_appmetrics.integrations.redis.link",
        "flask_appmetrics.health.windows",
        "flask_appmetrics.health.checks",
        "flask_appmetrics.health.monitor",
    ],
)
def test_windows_import_nothing_of_flask_or_the_app_state(module: str) -> None:
    imported = _imported_modules(module)
    assert not {m for m in imported if m.split(".")[0] == "flask"}, imported
    forbidden = {
        "flask_appmetrics.app_state",
        "flask_appmetrics.health.monitor",
        "flask_appmetrics.extension",
        "flask_appmetrics.web.guard",
    }
    assert not imported & forbidden, imported
