"""The health families on /metrics: each check's last result and duration, and the verdict
as an enum, computed at scrape time from the checks' cached results."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.health.windows import RequestCounts
from tests.support.apps import AppFactory

HUNG = 30.0


def up(registry: CollectorRegistry, check: str) -> float | None:
    return registry.get_sample_value("health_check_up", {"check": check})


def verdict(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        status: registry.get_sample_value("app_health_status", {"app_health_status": status})
        for status in ("healthy", "degraded", "unhealthy")
    }


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_checks_and_verdict_are_exported(
    metrics: FlaskMetrics, registry: CollectorRegistry, app_factory: AppFactory
) -> None:
    # Kept referenced: the families report the apps that are alive.
    app = app_factory()
    # No check yet: the verdict alone.
    assert verdict(registry) == {"healthy": 1.0, "degraded": 0.0, "unhealthy": 0.0}
    assert up(registry, "database") is None
    metrics.add_health_check("database", lambda: True)
    metrics.add_health_check("search", lambda: False, critical=False)
    assert up(registry, "database") == 1.0
    assert up(registry, "search") == 0.0
    duration = registry.get_sample_value("health_check_duration_seconds", {"check": "database"})
    assert duration is not None
    assert 0.0 <= duration < 30.0
    assert verdict(registry) == {"healthy": 0.0, "degraded": 1.0, "unhealthy": 0.0}
    metrics.add_health_check("database", lambda: False)  # replaced: a new check
    assert up(registry, "database") == 0.0
    assert verdict(registry) == {"healthy": 0.0, "degraded": 0.0, "unhealthy": 1.0}
    assert FlaskMetrics.state(app) is not None


def test_the_verdict_is_an_enum_in_openmetrics(
    metrics: FlaskMetrics, registry: CollectorRegistry, app: Flask
) -> None:
    page = generate_openmetrics(registry).decode()
    (family,) = [f for f in text_string_to_metric_families(page) if f.name == "app_health_status"]
    assert family.type == "stateset"
    assert {s.labels["app_health_status"]: s.value for s in family.samples} == {
        "healthy": 1.0,
        "degraded": 0.0,
        "unhealthy": 0.0,
    }


def test_a_scrape_reuses_the_probes_results(
    metrics: FlaskMetrics, registry: CollectorRegistry, app: Flask
) -> None:
    runs: list[int] = []
    metrics.add_health_check("database", lambda: runs.append(1) is None)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    for _ in range(3):
        assert client.get("/metrics").status_code == 200
        assert up(registry, "database") == 1.0
    assert len(runs) == 1


def test_a_scrape_waits_for_a_hung_check_no_longer_than_its_timeout(
    metrics: FlaskMetrics, registry: CollectorRegistry, app: Flask, release: threading.Event
) -> None:
    metrics.add_health_check("hangs", release.wait, timeout=0.05)
    pages: list[bytes] = []
    thread = threading.Thread(target=lambda: pages.append(generate_latest(registry)), daemon=True)
    thread.start()
    thread.join(HUNG)
    assert not thread.is_alive(), "the scrape hung on a hung check"
    assert up(registry, "hangs") == 0.0
    assert registry.get_sample_value("health_check_duration_seconds", {"check": "hangs"}) == 0.05


def test_apps_sharing_a_registry_are_summed_up_worst_first(registry: CollectorRegistry) -> None:
    good, bad = FlaskMetrics(registry=registry), FlaskMetrics(registry=registry)
    good.add_health_check("database", lambda: True)
    bad.add_health_check("database", lambda: False)
    first, second = Flask("good"), Flask("bad")
    good.init_app(first)
    bad.init_app(second)
    assert up(registry, "database") == 0.0
    assert verdict(registry)["unhealthy"] == 1.0
    # A dropped app stops counting.
    del second
    gc.collect()
    assert up(registry, "database") == 1.0
    assert verdict(registry)["healthy"] == 1.0


class BrokenRequests:
    """A request window whose store is gone."""

    def record(self, error: bool) -> None:
        pass

    def counts(self) -> RequestCounts:
        raise RuntimeError("window backend down")


def test_an_evaluation_that_fails_is_left_out_and_counted(
    registry: CollectorRegistry, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    state = FlaskMetrics.state(app)
    assert state is not None
    state.health.requests = BrokenRequests()
    assert "window backend down" not in caplog.text
    assert verdict(registry) == {"healthy": None, "degraded": None, "unhealthy": None}
    errors = registry.get_sample_value(
        "flask_appmetrics_internal_errors_total", {"component": "scrape_value"}
    )
    assert errors is not None
    assert errors >= 1.0
    assert "window backend down" in caplog.text
