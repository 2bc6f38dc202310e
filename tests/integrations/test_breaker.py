"""A real pybreaker.CircuitBreaker through closed -> open -> half-open -> closed, with its
successes, failures, rejected calls and transitions, and /api/health degraded while open."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta, timezone

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics

# The extra ``pybreaker``: skipped, not failed, where only the core is installed.
pybreaker = pytest.importorskip("pybreaker")
integration = pytest.importorskip("flask_appmetrics.integrations.pybreaker")
BreakerListener = integration.BreakerListener
monitor_breaker = integration.monitor_breaker

SERVICE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def unique_service(request: pytest.FixtureRequest) -> None:
    # Breakers not pinned to an app report their state to every app initialised after
    # them, and other tests' breakers live until collected: a service name of its own keeps
    # this test's series apart from theirs.
    SERVICE["service"] = f"gemini-{request.node.name}"
    # Earlier tests' breakers (one left open, say) are garbage now, but in reference cycles:
    # collect them before this test's app is made, or they would report to it.
    gc.collect()


class Upstream:
    """A dependency that fails on demand."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failing:
            raise ConnectionError("upstream down")
        return "ok"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**SERVICE, **labels})


def transitions(registry: CollectorRegistry, state: str) -> float | None:
    return value(registry, "circuit_breaker_transitions_total", state=state)


def let_reset_timeout_pass(breaker: pybreaker.CircuitBreaker) -> None:
    # pybreaker compares the time it opened with the reset timeout; moving the opening
    # back in its storage is the same as waiting, without a timed test.
    storage = breaker._state_storage
    # UTC either way: naive before pybreaker 1.3, aware since.
    now = datetime.now(timezone.utc)
    if storage.opened_at is not None and storage.opened_at.tzinfo is None:
        now = now.replace(tzinfo=None)
    storage.opened_at = now - timedelta(seconds=breaker.reset_timeout + 1)


@pytest.fixture
def breaker() -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name=SERVICE["service"])


def test_state_is_seeded_at_registration(
    app: Flask, registry: CollectorRegistry, breaker: pybreaker.CircuitBreaker
) -> None:
    with app.app_context():
        monitor_breaker(breaker)
    assert value(registry, "circuit_breaker_state") == 0.0
    for name in (
        "circuit_breaker_failures_total",
        "circuit_breaker_successes_total",
        "circuit_breaker_rejected_calls_total",
    ):
        assert value(registry, name) == 0.0
    for state in ("closed", "half_open", "open"):
        assert transitions(registry, state) == 0.0


def test_a_breaker_made_before_the_app_is_seeded_when_the_app_starts(
    registry: CollectorRegistry,
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, name=SERVICE["service"])
    breaker.open()
    monitor_breaker(breaker)  # module level: no app yet (or an unrelated latest one)
    app = Flask("late")
    FlaskMetrics(app, registry=registry)
    assert value(registry, "circuit_breaker_state") == 2.0


def test_full_cycle_closed_open_half_open_closed(
    app: Flask, registry: CollectorRegistry, breaker: pybreaker.CircuitBreaker
) -> None:
    upstream = Upstream()
    guarded = breaker(upstream)
    with app.app_context():
        monitor_breaker(breaker)

        assert guarded() == "ok"
        assert value(registry, "circuit_breaker_successes_total") == 1.0

        upstream.failing = True
        with pytest.raises(ConnectionError):
            guarded()
        with pytest.raises(pybreaker.CircuitBreakerError):  # the second failure trips it
            guarded()
        assert value(registry, "circuit_breaker_failures_total") == 2.0
        assert value(registry, "circuit_breaker_state") == 2.0
        assert transitions(registry, "open") == 1.0

        calls_before = upstream.calls
        for _ in range(3):
            with pytest.raises(pybreaker.CircuitBreakerError):
                guarded()
        assert upstream.calls == calls_before  # refused without calling
        assert value(registry, "circuit_breaker_rejected_calls_total") == 3.0
        assert value(registry, "circuit_breaker_failures_total") == 2.0

        upstream.failing = False
        let_reset_timeout_pass(breaker)
        assert guarded() == "ok"  # the trial call: half-open, then closed
        assert transitions(registry, "half_open") == 1.0
        assert transitions(registry, "closed") == 1.0
        assert value(registry, "circuit_breaker_state") == 0.0
        assert value(registry, "circuit_breaker_successes_total") == 2.0
        assert value(registry, "circuit_breaker_rejected_calls_total") == 3.0


def test_a_failed_trial_reopens(
    app: Flask, registry: CollectorRegistry, breaker: pybreaker.CircuitBreaker
) -> None:
    upstream = Upstream()
    with app.app_context():
        monitor_breaker(breaker)
        upstream.failing = True
        for _ in range(2):
            with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
                breaker.call(upstream)
        let_reset_timeout_pass(breaker)
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(upstream)  # half-open trial fails: open again
    assert transitions(registry, "open") == 2.0
    assert transitions(registry, "half_open") == 1.0
    assert value(registry, "circuit_breaker_state") == 2.0
    assert value(registry, "circuit_breaker_failures_total") == 3.0
    assert value(registry, "circuit_breaker_rejected_calls_total") == 0.0


def test_calling_context_manager_is_counted(
    app: Flask, registry: CollectorRegistry, breaker: pybreaker.CircuitBreaker
) -> None:
    with app.app_context():
        monitor_breaker(breaker)
        with breaker.calling():
            pass
        breaker.open()
        with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
            pass
    assert value(registry, "circuit_breaker_successes_total") == 1.0
    assert value(registry, "circuit_breaker_rejected_calls_total") == 1.0


def test_monitoring_twice_returns_the_same_listener(breaker: pybreaker.CircuitBreaker) -> None:
    first = monitor_breaker(breaker)
    assert monitor_breaker(breaker) is first
    assert sum(isinstance(x, BreakerListener) for x in breaker.listeners) == 1


def test_a_breaker_needs_a_service_name() -> None:
    with pytest.raises(ValueError, match="service"):
        monitor_breaker(pybreaker.CircuitBreaker())
    listener = monitor_breaker(pybreaker.CircuitBreaker(), service="maps")
    assert listener.service == "maps"


def test_a_pinned_breaker_records_into_its_app_only(breaker: pybreaker.CircuitBreaker) -> None:
    pinned_registry, other_registry = CollectorRegistry(), CollectorRegistry()
    pinned, other = Flask("pinned"), Flask("other")
    FlaskMetrics(pinned, registry=pinned_registry)
    monitor_breaker(breaker, app=pinned)
    FlaskMetrics(other, registry=other_registry)
    with other.app_context():
        breaker.call(lambda: None)
    assert pinned_registry.get_sample_value("circuit_breaker_successes_total", SERVICE) == 1.0
    assert other_registry.get_sample_value("circuit_breaker_successes_total", SERVICE) is None


def test_an_open_breaker_degrades_health(
    client: FlaskClient, app: Flask, breaker: pybreaker.CircuitBreaker
) -> None:
    with app.app_context():
        monitor_breaker(breaker)
    body = client.get("/api/health").get_json()
    assert body["status"] == "healthy", body
    with app.app_context():
        breaker.open()
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"
