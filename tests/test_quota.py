"""Quota: minute and day windows with a fake clock, time-zone midnight, exact counts under
threads, and the quota_* gauges computed at scrape time."""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    InMemoryQuota,
    QuotaCounter,
    QuotaLimits,
    QuotaUsage,
    quota_usage,
    record_gemini_usage,
    record_quota_usage,
)

from .conftest import AppFactory

PACIFIC = ZoneInfo("America/Los_Angeles")


class FakeClock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the window ---------------------------------------------------------------------------


def test_in_memory_quota_is_a_quota_counter() -> None:
    counter: QuotaCounter = InMemoryQuota()
    assert counter.usage() == QuotaUsage()


def test_minute_usage_decays_to_zero_when_the_minute_is_over() -> None:
    clock = FakeClock(datetime(2026, 3, 2, 12, 0, 10, tzinfo=timezone.utc))
    quota = InMemoryQuota(clock=clock)
    quota.add(1, 100)
    clock.advance(30)
    assert quota.add(1, 50) == QuotaUsage(2, 150, 2, 150)
    clock.advance(25)  # 12:01:05, nothing recorded since
    assert quota.usage() == QuotaUsage(0, 0, 2, 150)


def test_day_resets_at_midnight_in_the_configured_zone_not_utc() -> None:
    # 23:59:30 in Los Angeles (PST, UTC-8) is 07:59:30 UTC.
    clock = FakeClock(datetime(2026, 1, 15, 23, 59, 30, tzinfo=PACIFIC))
    quota = InMemoryQuota("America/Los_Angeles", clock=clock)
    quota.add(3, 300)
    clock.advance(60)  # 00:00:30 Pacific: a new quota day
    assert quota.usage().requests_today == 0
    quota.add(1, 10)

    # UTC midnight (16:00 Pacific, the same quota day) does not reset it.
    clock.now = datetime(2026, 1, 17, 0, 0, 30, tzinfo=timezone.utc).timestamp()
    assert quota.usage().requests_today == 1


def test_the_zone_is_configurable() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 23, 59, 50, tzinfo=timezone.utc))
    quota = InMemoryQuota("UTC", clock=clock)
    quota.add(1, 1)
    clock.advance(20)
    assert quota.usage() == QuotaUsage()


def test_counts_are_exact_under_concurrency() -> None:
    quota = InMemoryQuota()
    threads = 8
    per_thread = 5_000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            quota.add(1, 3)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert quota.usage().requests_today == threads * per_thread
    assert quota.usage().tokens_today == 3 * threads * per_thread


def test_limits_report_what_is_exceeded() -> None:
    limits = QuotaLimits(rpm=2, tpm=100, rpd=None, tpd=1000)
    assert limits.exceeded(QuotaUsage(2, 100, 2, 100)) == ()
    assert limits.exceeded(QuotaUsage(3, 101, 3, 1001)) == ("rpm", "tpm", "tpd")
    assert limits.items() == (("rpm", 2), ("tpm", 100), ("tpd", 1000))


# -- the gauges ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, 0, tzinfo=PACIFIC))


@pytest.fixture
def quota_app(registry: CollectorRegistry, clock: FakeClock) -> Flask:
    app = Flask("quota")
    app.config.update(APPMETRICS_QUOTA_RPM=3, APPMETRICS_QUOTA_TPM=1000)
    FlaskMetrics(app, registry=registry, quota=InMemoryQuota(clock=clock))
    return app


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_gauges_follow_usage_and_decay_at_scrape_time(
    quota_app: Flask, registry: CollectorRegistry, clock: FakeClock
) -> None:
    with quota_app.app_context():
        record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens=400)
        record_quota_usage(requests=1, tokens=100)
    assert gauge(registry, "quota_requests_current_minute") == 2.0
    assert gauge(registry, "quota_tokens_current_minute") == 500.0
    assert gauge(registry, "quota_rpm_remaining") == 1.0
    assert gauge(registry, "quota_tpm_remaining") == 500.0

    clock.advance(60)  # no traffic for a minute: nothing else is recorded
    assert gauge(registry, "quota_requests_current_minute") == 0.0
    assert gauge(registry, "quota_tokens_current_minute") == 0.0
    assert gauge(registry, "quota_rpm_remaining") == 3.0
    assert gauge(registry, "quota_requests_today") == 2.0
    assert gauge(registry, "quota_tokens_today") == 500.0


def test_limits_and_exceeded_counts(quota_app: Flask, registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) == 3.0
    assert registry.get_sample_value("quota_limit", {"limit": "tpm"}) == 1000.0
    assert registry.get_sample_value("quota_limit", {"limit": "rpd"}) is None
    assert registry.get_sample_value("quota_exceeded_total", {"limit": "rpm"}) == 0.0
    with quota_app.app_context():
        for _ in range(5):
            record_quota_usage()
        record_quota_usage(requests=0, tokens=2000)
    # Calls 4 and 5; the token-only record is over the TPM, not the RPM.
    assert registry.get_sample_value("quota_exceeded_total", {"limit": "rpm"}) == 2.0
    assert registry.get_sample_value("quota_exceeded_total", {"limit": "tpm"}) == 1.0
    assert gauge(registry, "quota_rpm_remaining") == 0.0
    with quota_app.app_context():
        assert quota_usage() == QuotaUsage(5, 2000, 5, 2000)


def test_remaining_is_infinite_when_unlimited(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_quota_usage(tokens=10)
    assert gauge(registry, "quota_requests_current_minute") == 1.0
    assert gauge(registry, "quota_rpm_remaining") == math.inf
    assert gauge(registry, "quota_tpm_remaining") == math.inf
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APPMETRICS_QUOTA_RPM", 0),
        ("APPMETRICS_QUOTA_TPM", -5),
        ("APPMETRICS_QUOTA_RPD", "100"),
        ("APPMETRICS_QUOTA_TPD", 1.5),
        ("APPMETRICS_QUOTA_TIMEZONE", "Mars/Olympus_Mons"),
        ("APPMETRICS_QUOTA_TIMEZONE", ""),
    ],
)
def test_bad_quota_config_fails_at_start(app_factory: AppFactory, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        app_factory({key: value})


def test_the_latest_app_sharing_a_registry_sets_the_limits(
    app_factory: AppFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # An app factory called per test on one registry: the app under test is the latest.
    first = app_factory({"APPMETRICS_QUOTA_RPM": 10})
    with first.app_context():
        record_quota_usage(requests=4)
    with caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        app_factory({"APPMETRICS_QUOTA_RPM": 20, "APPMETRICS_QUOTA_TPD": 5000})
    assert "quota limits change" in caplog.text
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) == 20.0
    assert registry.get_sample_value("quota_limit", {"limit": "tpd"}) == 5000.0
    assert gauge(registry, "quota_rpm_remaining") == 16.0  # one quota, shared
    app_factory()
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) is None
    assert gauge(registry, "quota_rpm_remaining") == math.inf


def test_a_later_quota_counter_replaces_the_earlier_one(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    FlaskMetrics(Flask("first"), registry=registry)
    counter = InMemoryQuota(clock=clock)
    counter.add(7, 70)
    FlaskMetrics(Flask("second"), registry=registry, quota=counter)
    assert gauge(registry, "quota_requests_today") == 7.0
    FlaskMetrics(Flask("third"), registry=registry)  # no counter of its own: in process
    assert gauge(registry, "quota_requests_today") == 0.0
