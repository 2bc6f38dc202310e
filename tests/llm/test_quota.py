"""Quota: minute and day windows with a fake clock, time-zone midnight, exact counts under
threads, and the quota_* gauges computed at scrape time."""

from __future__ import annotations

import gc
import math
import threading
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    InMemoryQuota,
    QuotaCounter,
    QuotaLimits,
    QuotaUsage,
    quota_usage,
    record_cache_event,
    record_gemini_usage,
    record_quota_usage,
)
from flask_appmetrics.config import load_settings
from flask_appmetrics.metrics.registry_state import registry_state
from tests.support.apps import AppFactory

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


QUOTA_GAUGES = (
    "quota_requests_current_minute",
    "quota_requests_today",
    "quota_tokens_current_minute",
    "quota_tokens_today",
    "quota_rpm_remaining",
    "quota_tpm_remaining",
)


class CountingQuota(InMemoryQuota):
    """An in-process counter that counts how often it is read."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reads = 0

    def usage(self) -> QuotaUsage:
        self.reads += 1
        return super().usage()


def test_one_scrape_reads_the_quota_counter_once(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """Six gauges, one read of the counter per scrape (with Redis: one round trip)."""
    counter = CountingQuota(clock=clock)
    app = Flask("counted")
    app.config.update(APPMETRICS_QUOTA_RPM=5, APPMETRICS_QUOTA_TPM=100)
    FlaskMetrics(app, registry=registry, quota=counter)
    with app.app_context():
        record_quota_usage(requests=2, tokens=30)
    client = app.test_client()

    def scrape() -> dict[str, float]:
        text = client.get("/metrics").get_data(as_text=True)
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name in QUOTA_GAUGES
        }

    counter.reads = 0
    assert scrape() == {
        "quota_requests_current_minute": 2.0,
        "quota_requests_today": 2.0,
        "quota_tokens_current_minute": 30.0,
        "quota_tokens_today": 30.0,
        "quota_rpm_remaining": 3.0,
        "quota_tpm_remaining": 70.0,
    }
    assert counter.reads == 1
    clock.advance(60)  # the next scrape reads again: the minute is over
    values = scrape()
    assert counter.reads == 2
    assert values["quota_requests_current_minute"] == 0.0
    assert values["quota_rpm_remaining"] == 5.0
    assert values["quota_requests_today"] == 2.0
    generate_latest(registry)  # any collection of the registry, not only our view
    assert counter.reads == 3


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
        ("APPMETRICS_QUOTA_RPD", "100 a day"),
        ("APPMETRICS_QUOTA_TPD", 1.5),
        ("APPMETRICS_QUOTA_TIMEZONE", "Mars/Olympus_Mons"),
        ("APPMETRICS_QUOTA_TIMEZONE", ""),
    ],
)
def test_bad_quota_config_fails_at_start(app_factory: AppFactory, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        app_factory({key: value})


@pytest.mark.parametrize(
    ("key", "first", "later"),
    [
        ("APPMETRICS_QUOTA_RPM", 10, 20),
        ("APPMETRICS_QUOTA_TPM", 1000, None),
        ("APPMETRICS_QUOTA_RPD", None, 100),
        ("APPMETRICS_QUOTA_TPD", None, 5000),
        ("APPMETRICS_QUOTA_TIMEZONE", "America/Los_Angeles", "Europe/Paris"),
        ("APPMETRICS_MAX_LABEL_VALUES", 20, 5),
        ("APPMETRICS_GEMINI_ENDPOINTS", ("/api/a",), ("/api/a", "/api/b")),
        ("APPMETRICS_GEMINI_MODELS", ("gemini-2.5-flash",), ("gemini-2.5-pro",)),
        (
            "APPMETRICS_GEMINI_PRICES",
            {"m": {"input": 1.0, "output": 2.0}},
            {"m": {"input": 1.0, "output": 3.0}},
        ),
    ],
)
def test_live_apps_sharing_a_registry_must_agree_on_domain_settings(
    app_factory: AppFactory, registry: CollectorRegistry, key: str, first: Any, later: Any
) -> None:
    """One registry has one label cap, one set of Gemini labels and prices, one quota: a
    later app asking for another value is refused, as for APPMETRICS_BUCKETS."""
    first_app = app_factory({"APPMETRICS_QUOTA_RPM": 10, key: first})
    with pytest.raises(ConfigurationError, match=f"^{key}: .*'{first_app.name}'"):
        app_factory({"APPMETRICS_QUOTA_RPM": 10, key: later})
    # The first app's settings still apply, and it still records.
    with first_app.app_context():
        record_quota_usage(requests=4)
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) == 10.0
    assert gauge(registry, "quota_rpm_remaining") == 6.0


def test_live_apps_with_the_same_settings_share_one_quota(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    config = {"APPMETRICS_QUOTA_RPM": 10, "APPMETRICS_GEMINI_ENDPOINTS": ["/a", "/b"]}
    first = app_factory(config)
    # The same values, the endpoints in another order: the same settings.
    second = app_factory({**config, "APPMETRICS_GEMINI_ENDPOINTS": ("/b", "/a")})
    for app in (first, second):
        with app.app_context():
            record_quota_usage(requests=3)
    assert gauge(registry, "quota_requests_current_minute") == 6.0
    assert gauge(registry, "quota_rpm_remaining") == 4.0


def test_an_app_per_test_on_the_default_registry() -> None:
    """A test suite's app factory on prometheus_client.REGISTRY: each test's app may have
    its own settings once the previous test's app is gone."""
    metrics = FlaskMetrics()  # the default registry, as a module-level extension is

    def create_app(config: dict[str, Any]) -> Flask:
        app = Flask("app_per_test")
        app.config.update(config)
        metrics.init_app(app)
        return app

    for rpm in (10, 10, 20, None):
        app = create_app({"APPMETRICS_QUOTA_RPM": rpm})
        with app.app_context():
            record_quota_usage(requests=1)
        expected = None if rpm is None else float(rpm)
        assert REGISTRY.get_sample_value("quota_limit", {"limit": "rpm"}) == expected
        del app  # the test is over
        gc.collect()  # as a suite does between tests: a Flask app is freed by the collector
    # While one lives, another app on the registry must agree with it.
    live = create_app({"APPMETRICS_QUOTA_RPM": 30})
    create_app({"APPMETRICS_QUOTA_RPM": 30})
    with pytest.raises(ConfigurationError, match=r"^APPMETRICS_QUOTA_RPM: "):
        create_app({"APPMETRICS_QUOTA_RPM": 40})
    assert REGISTRY.get_sample_value("quota_limit", {"limit": "rpm"}) == 30.0
    del live


def test_a_later_max_label_values_applies_once_the_earlier_apps_are_gone(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_MAX_LABEL_VALUES": 1})
    with app.app_context():
        record_cache_event(layer="l1")
        record_cache_event(layer="l2")  # over the cap of 1: "other"
    del app
    gc.collect()
    app = app_factory({"APPMETRICS_MAX_LABEL_VALUES": 3})
    with app.app_context():
        record_cache_event(layer="l3")
    layers = {
        sample.labels["layer"]
        for family in registry.collect()
        if family.name == "cache_layer_operations"
        for sample in family.samples
    }
    assert layers == {"l1", "other", "l3"}


def test_a_later_quota_counter_replaces_the_earlier_one(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    FlaskMetrics(Flask("first"), registry=registry)
    counter = InMemoryQuota(clock=clock)
    counter.add(7, 70)
    FlaskMetrics(Flask("second"), registry=registry, quota=counter)
    assert gauge(registry, "quota_requests_today") == 7.0
    gc.collect()  # the apps that brought the counter are gone
    FlaskMetrics(Flask("third"), registry=registry)  # no counter of its own: in process
    assert gauge(registry, "quota_requests_today") == 0.0


def test_domain_settings_can_be_checked_before_init(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    def check(config: dict[str, Any]) -> None:
        settings = load_settings(config)
        registry_state(registry).check(settings.http.buckets, settings.shared)

    check({})  # no app yet: nothing to agree
    app = app_factory({"APPMETRICS_QUOTA_TIMEZONE": "Europe/Paris"})
    check({"APPMETRICS_QUOTA_TIMEZONE": "Europe/Paris"})
    with pytest.raises(ConfigurationError, match=r"^APPMETRICS_QUOTA_TIMEZONE: "):
        check({})
    assert app.name == "test_app"  # alive until here
