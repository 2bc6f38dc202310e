"""User health checks: pass, fail, raise, hang; critical or not; per extension, per app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, get_health_status
from tests.support.apps import AppFactory

#: Generous bound for "the probe came back": only a hung probe gets near it.
HUNG = 30.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so hanging checks end with the test."""
    event = threading.Event()
    yield event
    event.set()


def get(app: Flask, path: str = "/api/health", **headers: str) -> tuple[int, dict[str, Any]]:
    response = app.test_client().get(path, headers=headers)
    body = response.get_json()
    assert isinstance(body, dict)
    return response.status_code, body


def get_within(app: Flask, path: str) -> tuple[int, dict[str, Any]]:
    """GET *path* in another thread; fail (not hang) if it never answers."""
    result: list[tuple[int, dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: result.append(get(app, path)), daemon=True)
    thread.start()
    thread.join(HUNG)
    assert not thread.is_alive(), f"{path} hung on a hung check"
    return result[0]


def test_passing_checks_are_reported(metrics: FlaskMetrics, app: Flask) -> None:
    @metrics.health_check("database")
    def database() -> bool:
        return True

    @metrics.health_check("cache", critical=False)
    def cache() -> None:  # returning nothing passes: it did not raise
        pass

    status, body = get(app)
    assert (status, body["status"]) == (200, "healthy")
    assert body["checks"]["database"]["status"] == "pass"
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["cache"] == {
        "status": "pass",
        "critical": False,
        "duration_ms": body["checks"]["cache"]["duration_ms"],
        "age_seconds": 0.0,  # run for this probe
    }


def test_failed_critical_check_is_unhealthy(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("database", lambda: False)
    status, body = get(app)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["checks"]["database"]["error"] == "returned False"
    assert body["reasons"] == ["check 'database' failed: returned False"]


def test_failed_non_critical_check_is_degraded(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("cache", lambda: False, critical=False)
    status, body = get(app)
    assert (status, body["status"]) == (200, "degraded")


def test_a_raising_check_fails_without_leaking_its_message(
    metrics: FlaskMetrics, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    @metrics.health_check("database")
    def database() -> bool:
        raise ConnectionError("cannot reach db.internal:5432 as admin")

    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"]["error"] == "ConnectionError"
    assert b"db.internal" not in response.data
    assert "cannot reach db.internal:5432" in caplog.text  # the operator gets it in the log


def test_a_check_raising_system_exit_is_a_failed_check(metrics: FlaskMetrics, app: Flask) -> None:
    def leave() -> bool:
        raise SystemExit(3)

    metrics.add_health_check("exits", leave)
    assert get(app)[1]["checks"]["exits"]["error"] == "RuntimeError"


def test_a_hung_check_times_out_without_hanging_the_probe(
    metrics: FlaskMetrics, app: Flask, release: threading.Event
) -> None:
    metrics.add_health_check("hangs", release.wait, timeout=0.05)
    metrics.add_health_check("fine", lambda: True)
    status, body = get_within(app, "/api/health")
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["checks"]["hangs"]["error"] == "timeout"
    assert body["checks"]["hangs"]["duration_ms"] == 50.0
    assert body["checks"]["fine"]["status"] == "pass"


def test_default_timeout_comes_from_config(
    metrics: FlaskMetrics, app_factory: AppFactory, release: threading.Event
) -> None:
    app = app_factory({"APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS": 0.02})
    metrics.add_health_check("hangs", release.wait, critical=False)
    status, body = get_within(app, "/readyz")
    assert (status, body["status"]) == (200, "warn")
    assert body["checks"]["hangs"]["error"] == "timeout"
    assert body["checks"]["hangs"]["duration_ms"] == 20.0


def test_a_hung_check_holds_one_thread_however_often_probed(
    metrics: FlaskMetrics, app: Flask, release: threading.Event
) -> None:
    # Failures not reused: every probe asks for a run, and joins the one in flight.
    metrics.add_health_check("stuck", release.wait, timeout=0.01, failure_cache_seconds=0)
    for _ in range(5):
        assert get_within(app, "/readyz")[0] == 503
    stuck = [t for t in threading.enumerate() if t.name == "appmetrics-check-stuck"]
    assert len(stuck) == 1
    assert stuck[0].daemon  # cannot keep the process from exiting
    release.set()
    stuck[0].join(HUNG)
    assert get(app, "/readyz")[0] == 200  # once it returns, the next probe runs it afresh


def test_checks_run_in_the_app_context(metrics: FlaskMetrics, app_factory: AppFactory) -> None:
    seen: list[str] = []

    @metrics.health_check("context")
    def context() -> bool:
        seen.append(current_app.name)
        return True

    app = app_factory()
    app.name = "the_app"
    assert get(app)[1]["checks"]["context"]["status"] == "pass"
    assert seen == ["the_app"]


def test_checks_apply_to_every_app_of_the_extension(
    metrics: FlaskMetrics, app_factory: AppFactory
) -> None:
    first = app_factory()
    metrics.add_health_check("database", lambda: False)  # registered after first init_app
    second = app_factory()
    assert get(first)[0] == 503
    assert get(second)[0] == 503
    metrics.remove_health_check("database")
    assert get(first)[0] == 200


def test_checks_belong_to_their_extension(registry: CollectorRegistry) -> None:
    ours, theirs = FlaskMetrics(registry=registry), FlaskMetrics(registry=registry)
    ours.add_health_check("database", lambda: False)
    app = Flask("theirs")
    theirs.init_app(app)
    assert get(app)[0] == 200


def test_registering_a_name_again_replaces_the_check(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("database", lambda: False)
    metrics.add_health_check("database", lambda: True)
    status, body = get(app)
    assert status == 200
    assert list(body["checks"]) == ["database"]


def test_readyz_follows_checks_not_traffic(metrics: FlaskMetrics, app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_HEALTH_MIN_REQUESTS": 1})
    client = app.test_client()
    for _ in range(5):
        client.get("/boom")  # 100% errors: /api/health is unhealthy
    assert get(app)[0] == 503
    assert get(app, "/readyz") == (200, {"status": "pass", "checks": {}})
    metrics.add_health_check("database", lambda: False)
    status, body = get(app, "/readyz")
    assert (status, body["status"]) == (503, "fail")
    assert body["checks"]["database"]["status"] == "fail"


def test_livez_ignores_checks(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("database", lambda: False)
    assert get(app, "/livez") == (200, {"status": "pass"})


def test_checks_in_health_json(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("database", lambda: True)
    metrics.add_health_check("cache", lambda: False, critical=False)
    status, body = get(app, Accept="application/health+json")
    assert (status, body["status"]) == (200, "warn")
    assert body["checks"]["database:responseTime"][0]["status"] == "pass"
    cache = body["checks"]["cache:responseTime"][0]
    assert (cache["status"], cache["output"], cache["observedUnit"]) == (
        "warn",
        "returned False",
        "ms",
    )
    status, body = get(app, "/readyz", Accept="application/health+json")
    assert body["checks"]["cache:responseTime"][0]["status"] == "warn"


def test_get_health_status_runs_the_checks(metrics: FlaskMetrics, app: Flask) -> None:
    metrics.add_health_check("database", lambda: False)
    with app.app_context():
        status = get_health_status()
    assert status["status"] == "unhealthy"
    assert status["checks"]["database"]["status"] == "fail"


def test_bad_registrations_are_refused(metrics: FlaskMetrics) -> None:
    async def async_check() -> bool:
        return True

    with pytest.raises(TypeError, match="not async"):
        metrics.add_health_check("async", async_check)
    with pytest.raises(TypeError, match="callable"):
        metrics.add_health_check("value", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        metrics.add_health_check("", lambda: True)
    for timeout in (0, -1, float("nan"), True):
        with pytest.raises(ValueError, match="timeout"):
            metrics.add_health_check("x", lambda: True, timeout=timeout)


def test_failures_are_logged_once_per_transition(
    metrics: FlaskMetrics, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_appmetrics")
    healthy = [False]
    # Results not reused: each probe runs the check.
    metrics.add_health_check("flaky", lambda: healthy[0], cache_seconds=0, failure_cache_seconds=0)
    for _ in range(3):
        get(app)
    healthy[0] = True
    get(app)
    messages = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert messages == [
        "health check 'flaky' failed: returned False",
        "health check 'flaky' passes again",
    ]
