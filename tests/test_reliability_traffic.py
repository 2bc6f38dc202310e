"""Hostile traffic at volume: series count, ``/metrics`` size and memory stay flat.

Random paths (unicode, huge, scanners' 404s), methods (unknown, lower-case, long),
headers and a new user identity on almost every request go straight through the WSGI
callable. After a warm-up that reaches every series such traffic can create (and fills the
bounded users window), 20,000 more requests must add no series, leave ``/metrics`` the
same size (give or take the digits of growing counts) and the process's memory within a
couple of MB. ``benchmarks/hostile_traffic.py`` runs the long version (100,000 requests)
side by side with prometheus_flask_exporter.
"""

from __future__ import annotations

from collections import Counter as Tally

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import FlaskMetrics
from tests.support.internal_errors import assert_no_internal_error
from tests.support.traffic import (
    RULES,
    HostileTraffic,
    call,
    drive,
    hostile,
    hostile_app,
    rss_bytes,
    scrape,
)

WARM_UP = 12_000
MEASURED = 20_000
#: RSS growth allowed over the measured requests, after the warm-up.
RSS_SLACK = 2 * 1024 * 1024
#: ``/metrics`` may grow by the extra digits of counts and sums, nothing more.
PAGE_SLACK = 0.02

Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]


def series(page: bytes) -> Series:
    """Every (sample name, labels) pair of an exposition page."""
    return frozenset(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(page.decode("utf-8"))
        for sample in family.samples
    )


def label_values(registry: CollectorRegistry, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
def hostile_metrics_app(registry: CollectorRegistry) -> Flask:
    app = hostile_app()
    FlaskMetrics(registry=registry).init_app(app)
    return app


def test_hostile_traffic_leaves_series_page_and_memory_flat(
    hostile_metrics_app: Flask, registry: CollectorRegistry
) -> None:
    app = hostile_metrics_app
    traffic = HostileTraffic(seed=7)
    sent = drive(app, traffic.every_combination())
    sent += drive(app, hostile(traffic, WARM_UP))
    scrape(app)  # so that /metrics's own series exist before the snapshot
    before_page = scrape(app)
    before_rss = rss_bytes()

    sent += drive(app, hostile(traffic, MEASURED))

    after_rss = rss_bytes()
    after_page = scrape(app)
    scrapes = 3
    # Not one series more: hostile input reaches no label value.
    assert series(after_page) == series(before_page)
    assert len(after_page) <= len(before_page) * (1 + PAGE_SLACK)
    assert after_rss - before_rss <= RSS_SLACK, (
        f"RSS grew by {(after_rss - before_rss) / 2**20:.2f} MiB over {MEASURED} requests"
    )
    # Nothing lost, nothing invented: every request counted once, no internal error.
    total = sum(
        s.value for f in registry.collect() for s in f.samples if s.name == "http_requests_total"
    )
    assert total == sent + scrapes
    assert_no_internal_error(registry)
    # Bounded labels, by construction.
    endpoints = label_values(registry, "http_requests_total", "endpoint")
    assert endpoints <= {*RULES, "<unmatched>", "/metrics"}
    methods = label_values(registry, "http_requests_total", "method")
    assert "_OTHER" in methods
    assert len(methods) <= 10
    error_types = label_values(registry, "application_errors_total", "error_type")
    assert len(error_types) <= app.config["APPMETRICS_MAX_ERROR_TYPES"] + 1
    assert "other" in error_types
    users = registry.get_sample_value("concurrent_users")
    assert users is not None
    assert users <= app.config["APPMETRICS_USERS_MAX_TRACKED"]


def test_hostile_requests_get_the_same_responses_as_without_the_extension(
    registry: CollectorRegistry,
) -> None:
    # The instrumented app answers every hostile request exactly as the bare app does.
    bare = hostile_app("bare")
    instrumented = hostile_app("instrumented")
    FlaskMetrics(registry=registry).init_app(instrumented)
    left, right = HostileTraffic(seed=3), HostileTraffic(seed=3)
    statuses: Tally[str] = Tally()
    for _ in range(3_000):
        expected = call(bare, left.environ())
        assert call(instrumented, right.environ()) == expected
        statuses[expected[:3]] += 1
    # The stream covered the interesting outcomes.
    assert {"200", "404", "405", "500"} <= set(statuses)
