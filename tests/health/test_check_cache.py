"""Check results are reused for their cache time and shared by concurrent probes; each
result says how old it is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.health.checks import CheckRegistry, CheckRunner
from tests.support.apps import AppFactory
from tests.support.clock import FakeClock

HUNG = 30.0


class Counted:
    """A check that counts its runs and answers what the test says."""

    def __init__(self, passes: bool = True) -> None:
        self.runs = 0
        self.passes = passes

    def __call__(self) -> bool:
        self.runs += 1
        return self.passes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def runner(clock: FakeClock, **kwargs: Any) -> CheckRunner:
    return CheckRunner(0.5, cache_seconds=5.0, failure_cache_seconds=1.0, clock=clock, **kwargs)


def test_a_pass_is_reused_for_the_cache_time_with_its_age(clock: FakeClock) -> None:
    checks, check = CheckRegistry(), Counted()
    checks.add("database", check)
    run = runner(clock)
    (first,) = run.run(checks)
    assert (first.passed, first.age_seconds, check.runs) == (True, 0.0, 1)
    clock.advance(4.9)
    (again,) = run.run(checks)
    assert check.runs == 1
    assert again.age_seconds == pytest.approx(4.9)
    assert again.as_dict()["age_seconds"] == 4.9
    assert again.duration_seconds == first.duration_seconds
    assert again.observed_at == first.observed_at
    clock.advance(0.1)  # 5 s old: stale
    (fresh,) = run.run(checks)
    assert (check.runs, fresh.age_seconds) == (2, 0.0)


def test_a_failure_is_reused_for_the_shorter_failure_time(clock: FakeClock) -> None:
    checks, check = CheckRegistry(), Counted(passes=False)
    checks.add("database", check)
    run = runner(clock)
    assert not run.run(checks)[0].passed
    clock.advance(0.9)
    assert not run.run(checks)[0].passed
    assert check.runs == 1
    check.passes = True
    clock.advance(0.1)
    assert run.run(checks)[0].passed  # the recovery shows after a second
    assert check.runs == 2


def test_per_check_cache_times_override_the_defaults(clock: FakeClock) -> None:
    checks = CheckRegistry()
    always, slow_db = Counted(), Counted(passes=False)
    checks.add("always", always, cache_seconds=0)
    checks.add("slow_db", slow_db, failure_cache_seconds=30)
    run = runner(clock)
    for _ in range(3):
        run.run(checks)
        clock.advance(10)
    assert always.runs == 3  # never reused
    assert slow_db.runs == 1  # its failure is reused for 30 s


def test_a_check_registered_again_is_not_answered_by_the_old_result(clock: FakeClock) -> None:
    checks = CheckRegistry()
    checks.add("database", Counted(passes=False))
    run = runner(clock)
    assert not run.run(checks)[0].passed
    replacement = Counted(passes=True)
    checks.add("database", replacement)
    assert run.run(checks)[0].passed
    assert replacement.runs == 1


@pytest.mark.parametrize(
    ("option", "value"), [("cache_seconds", -1), ("failure_cache_seconds", float("inf"))]
)
def test_bad_cache_times_are_refused(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        CheckRegistry().add("x", lambda: True, **{option: value})


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_ten_concurrent_probes_run_the_check_once(
    metrics: FlaskMetrics, app: Flask, gate: threading.Event
) -> None:
    runs: list[int] = []
    arrived = threading.Barrier(11)

    @metrics.health_check("database", timeout=HUNG)
    def database() -> bool:
        runs.append(1)
        gate.wait(HUNG)  # held until every probe asked
        return True

    answers: list[int] = []

    def probe() -> None:
        client = app.test_client()
        arrived.wait(HUNG)
        answers.append(client.get("/readyz").status_code)

    threads = [threading.Thread(target=probe, daemon=True) for _ in range(10)]
    for thread in threads:
        thread.start()
    arrived.wait(HUNG)
    # The probes find the run in flight (and wait for it) or its result (and reuse it).
    gate.set()
    for thread in threads:
        thread.join(HUNG)
    assert answers == [200] * 10
    assert len(runs) == 1
    # And the probes after them reuse the result.
    for _ in range(10):
        assert app.test_client().get("/api/health").status_code == 200
    assert len(runs) == 1


def test_health_json_says_how_old_each_result_is(
    metrics: FlaskMetrics, app_factory: AppFactory
) -> None:
    metrics.add_health_check("database", Counted())
    app = app_factory()
    client = app.test_client()
    first = client.get("/api/health").get_json()["checks"]["database"]
    assert first["age_seconds"] == 0.0
    second = client.get("/readyz").get_json()["checks"]["database"]
    assert second["age_seconds"] >= 0.0
    assert second["duration_ms"] == first["duration_ms"]  # the same run
    ietf = client.get("/readyz", headers={"Accept": "application/health+json"}).get_json()
    third = client.get("/api/health", headers={"Accept": "application/health+json"}).get_json()
    # The time of the reading, not of the response: the same for every reuse.
    assert (
        ietf["checks"]["database:responseTime"][0]["time"]
        == third["checks"]["database:responseTime"][0]["time"]
    )


def test_cache_times_come_from_config(metrics: FlaskMetrics, app_factory: AppFactory) -> None:
    check = Counted()
    metrics.add_health_check("database", check)
    app = app_factory({"APPMETRICS_HEALTH_CHECK_CACHE_SECONDS": 0})
    client = app.test_client()
    for _ in range(3):
        client.get("/readyz")
    assert check.runs == 3
    with pytest.raises(ConfigurationError, match="APPMETRICS_HEALTH_CHECK_CACHE_SECONDS"):
        app_factory({"APPMETRICS_HEALTH_CHECK_CACHE_SECONDS": -1})
    with pytest.raises(ConfigurationError, match="FAILURE_CACHE_SECONDS"):
        app_factory({"APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS": "soon"})
