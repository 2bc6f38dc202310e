"""A module-level extension gives each app a registry of its own: ``init_app(app, registry=)``.

The Flask-SQLAlchemy habit (``metrics = FlaskMetrics()`` at module level, custom metrics
declared next to it, ``metrics.init_app(app)`` in the factory) with a fresh registry per
test: every value, the quota and the custom metrics start afresh in each app's registry,
nothing reaches the extension's own, and the rules apps sharing a registry follow hold per
registry.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    InMemoryQuota,
    MetricConflictError,
    quota_usage,
    record_business_event,
    record_cache_event,
    record_quota_usage,
)

PING = {"method": "GET", "endpoint": "/ping", "status": "200"}


class Module:
    """What an app's ``extensions.py`` holds at import: the extension, its metrics."""

    def __init__(self, home: CollectorRegistry | None = None) -> None:
        self.metrics = FlaskMetrics(registry=home)
        self.jobs = self.metrics.counter("module_jobs_total", "Jobs", ["queue"])
        self.seconds = self.metrics.histogram("module_job_seconds", "Job time", buckets=(60.0,))

        @self.seconds.time()  # decorated at import, before any app exists
        def run_job() -> None:
            self.jobs.labels(queue="mail").inc()

        self.run_job = run_job

    def create_app(self, registry: CollectorRegistry | None, **config: object) -> Flask:
        app = Flask("module_app")
        app.config.update(config)
        self.metrics.init_app(app, registry=registry)

        @app.get("/ping")
        def ping() -> str:
            return "pong"

        return app


@pytest.fixture
def home() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def module(home: CollectorRegistry) -> Module:
    return Module(home)


def test_each_app_counts_in_its_own_registry(module: Module, home: CollectorRegistry) -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    first, second = module.create_app(one), module.create_app(two)
    first.test_client().get("/ping")
    second.test_client().get("/ping")
    second.test_client().get("/ping")
    assert one.get_sample_value("http_requests_total", PING) == 1.0
    assert two.get_sample_value("http_requests_total", PING) == 2.0
    assert home.get_sample_value("http_requests_total", PING) is None
    assert FlaskMetrics.state(first).registry is one  # type: ignore[union-attr]


def test_module_level_custom_metrics_record_into_the_app_recording(
    module: Module, home: CollectorRegistry
) -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    first, second = module.create_app(one), module.create_app(two)
    mail = {"queue": "mail"}
    # Declared at module level, shown at 0 in every app's registry from the start.
    assert one.get_sample_value("module_job_seconds_count") == 0.0
    with first.app_context():
        module.run_job()  # decorated at import: records where it runs
        module.jobs.labels(queue="mail").inc()
    with second.app_context():
        module.run_job()
    module.jobs.labels(queue="mail").inc()  # outside any context: the latest app's
    assert one.get_sample_value("module_jobs_total", mail) == 2.0
    assert one.get_sample_value("module_job_seconds_count") == 1.0
    assert two.get_sample_value("module_jobs_total", mail) == 2.0
    assert two.get_sample_value("module_job_seconds_count") == 1.0
    assert home.get_sample_value("module_jobs_total", mail) is None

    # The next test's app starts at zero.
    three = CollectorRegistry()
    third = module.create_app(three)
    assert three.get_sample_value("module_jobs_total", mail) is None
    with third.app_context():
        module.jobs.labels(queue="mail").inc()
    assert three.get_sample_value("module_jobs_total", mail) == 1.0
    assert two.get_sample_value("module_jobs_total", mail) == 2.0


def test_label_bounds_start_afresh_in_each_registry(module: Module) -> None:
    tenants = module.metrics.counter("tenants_total", "Tenants", ["tenant"], max_values=1)
    one, two = CollectorRegistry(), CollectorRegistry()
    first, second = module.create_app(one), module.create_app(two)
    with first.app_context():
        tenants.labels("acme").inc()
        tenants.labels("globex").inc()  # the one place is taken: "other"
    with second.app_context():
        tenants.labels("globex").inc()  # a fresh registry: its own place
    assert one.get_sample_value("tenants_total", {"tenant": "other"}) == 1.0
    assert two.get_sample_value("tenants_total", {"tenant": "globex"}) == 1.0


def test_metrics_declared_after_init_app_reach_the_apps_registry(module: Module) -> None:
    registry = CollectorRegistry()
    app = module.create_app(registry)
    signups = module.metrics.counter("late_signups_total", "Declared in the factory")
    assert registry.get_sample_value("late_signups_total") == 0.0
    with app.app_context():
        record_business_event("late_signups_total")  # by name, in the app's registry
        signups.inc()
    assert registry.get_sample_value("late_signups_total") == 2.0


def test_helpers_quota_and_its_gauges_are_per_registry(module: Module) -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    # Different limits on different registries: no agreement needed, both alive.
    first = module.create_app(one, APPMETRICS_QUOTA_RPM=10)
    second = module.create_app(two, APPMETRICS_QUOTA_RPM=20)
    with first.app_context():
        record_quota_usage(requests=3, tokens=100)
        record_cache_event(hit=True)
        usage = quota_usage()
    assert usage is not None
    assert usage.requests_today == 3
    with second.app_context():
        usage = quota_usage()
    assert usage is not None
    assert usage.requests_today == 0  # the quota does not carry over
    assert one.get_sample_value("quota_requests_today") == 3.0
    assert two.get_sample_value("quota_requests_today") == 0.0
    assert one.get_sample_value("quota_limit", {"limit": "rpm"}) == 10.0
    assert two.get_sample_value("quota_limit", {"limit": "rpm"}) == 20.0
    assert one.get_sample_value("cache_hit_rate") == 1.0
    assert two.get_sample_value("cache_hit_rate") is None


def test_apps_sharing_a_registry_of_their_own_must_agree(module: Module) -> None:
    shared = CollectorRegistry()
    first = module.create_app(shared, APPMETRICS_QUOTA_RPM=10)
    with pytest.raises(ConfigurationError) as raised:
        module.create_app(shared, APPMETRICS_QUOTA_RPM=20)
    assert raised.value.key == "APPMETRICS_QUOTA_RPM"
    assert first.name in str(raised.value)


def test_init_app_takes_a_quota_counter_per_app(module: Module) -> None:
    counter = InMemoryQuota()
    registry = CollectorRegistry()
    app = module.create_app(registry)  # the registry's own counter first
    other = Flask("with_counter")
    module.metrics.init_app(other, registry=CollectorRegistry(), quota=counter)
    with other.app_context():
        record_quota_usage(requests=2)
    assert counter.usage().requests_today == 2
    with app.app_context():
        usage = quota_usage()
    assert usage is not None
    assert usage.requests_today == 0


def test_cache_layers_and_catalog_metrics_follow_the_app(module: Module) -> None:
    module.metrics.register_cache_layer("memory", items=lambda: 7)
    registry = CollectorRegistry()
    app = module.create_app(registry)
    module.metrics.register_cache_layer("disk", items=lambda: 3)
    assert registry.get_sample_value("cache_items_count", {"layer": "memory"}) == 7.0
    assert registry.get_sample_value("cache_items_count", {"layer": "disk"}) == 3.0
    with app.app_context():
        module.metrics.metric("http_requests_total").labels("GET", "/ping", "200").inc()
    assert registry.get_sample_value("http_requests_total", PING) == 1.0


def test_a_conflict_in_the_apps_registry_is_refused_at_init(module: Module) -> None:
    registry = CollectorRegistry()
    Counter("module_jobs_total", "Someone else's", ["tenant"], registry=registry)
    app = Flask("conflict")
    with pytest.raises(MetricConflictError, match="module_jobs_total"):
        module.metrics.init_app(app, registry=registry)
    assert "appmetrics" not in app.extensions


def test_an_app_on_the_extensions_registry_records_there(
    module: Module, home: CollectorRegistry
) -> None:
    own = module.create_app(CollectorRegistry())
    plain = module.create_app(None)  # the extension's registry, as without the keyword
    with plain.app_context():
        module.jobs.labels(queue="mail").inc()
    assert home.get_sample_value("module_jobs_total", {"queue": "mail"}) == 1.0
    assert own.extensions["appmetrics"].registry is not home


def test_the_default_registry_is_left_alone() -> None:
    module = Module()  # metrics = FlaskMetrics(): prometheus_client.REGISTRY
    registry = CollectorRegistry()
    app = module.create_app(registry)
    before = REGISTRY.get_sample_value("module_jobs_total", {"queue": "mail"})
    app.test_client().get("/ping")
    with app.app_context():
        module.run_job()
    assert registry.get_sample_value("module_jobs_total", {"queue": "mail"}) == 1.0
    assert REGISTRY.get_sample_value("module_jobs_total", {"queue": "mail"}) == before


def test_dropped_apps_and_their_registries_are_let_go(
    module: Module, home: CollectorRegistry
) -> None:
    gone = []
    for _ in range(5):
        registry = CollectorRegistry()
        app = module.create_app(registry)
        app.test_client().get("/ping")
        with app.app_context():
            module.jobs.labels(queue="mail").inc()
        gone.append(weakref.ref(registry))
    del app, registry
    gc.collect()
    assert [ref() for ref in gone] == [None] * 5  # nothing of ours holds them
    # With no app of its own alive, calls record into the extension's registry again.
    module.jobs.labels(queue="mail").inc()
    assert home.get_sample_value("module_jobs_total", {"queue": "mail"}) == 1.0
