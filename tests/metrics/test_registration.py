"""Register once per registry; every app instrumented; conflicts are one clear error.

These are the bugs of a real service (two modules registering ``http_requests_total``) and of the
peers (a second app silently un-instrumented, or a crash at init or at request time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from flask_appmetrics import AlreadyInitializedError, FlaskMetrics, MetricConflictError
from tests.support.apps import AppFactory, add_test_routes

ITEM = {"method": "GET", "endpoint": "/items/<int:item_id>", "status": "200"}
ECHO = {"method": "GET", "endpoint": "/echo", "status": "200"}


def _requests(registry: CollectorRegistry, labels: dict[str, str] = ITEM) -> float:
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def _default_app() -> Flask:
    app = Flask("default_registry_app")
    add_test_routes(app)
    FlaskMetrics().init_app(app)
    return app


@pytest.mark.parametrize("style", ["constructor", "init_app"])
def test_both_init_styles_instrument_the_app(registry: CollectorRegistry, style: str) -> None:
    app = Flask("styles")
    add_test_routes(app)
    if style == "constructor":
        FlaskMetrics(app, registry=registry)
    else:
        FlaskMetrics(registry=registry).init_app(app)
    assert app.test_client().get("/items/1").status_code == 200
    assert _requests(registry) == 1.0


def test_fresh_app_per_test_on_default_registry_counts() -> None:
    # The pattern every Flask test suite uses: a new app (and here a new extension) per
    # test, all on prometheus_client.REGISTRY. The peer raises or goes silent on the second.
    # On /echo: the README's quick start expects its /items series to start at 0 there.
    for _ in range(3):
        before = _requests(REGISTRY, ECHO)
        app = _default_app()
        app.test_client().get("/echo")
        assert _requests(REGISTRY, ECHO) == before + 1


def test_fifty_apps_from_one_factory_all_count(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    apps = [app_factory() for _ in range(50)]
    for app in apps:
        assert app.test_client().get("/items/1").status_code == 200
    assert _requests(registry) == 50.0


def test_metric_set_is_registered_once(metrics: FlaskMetrics, registry: CollectorRegistry) -> None:
    metrics.init_app(Flask("first"))
    before = list(registry.collect())
    assert len(before) > 20
    for _ in range(5):
        app = Flask("again")
        metrics.init_app(app)
    assert [m.name for m in registry.collect()] == [m.name for m in before]


def test_second_init_app_on_one_app_is_a_clear_error(app: Flask, metrics: FlaskMetrics) -> None:
    with pytest.raises(AlreadyInitializedError, match="already initialised on app 'test_app'"):
        metrics.init_app(app)
    with pytest.raises(AlreadyInitializedError):
        FlaskMetrics(registry=CollectorRegistry()).init_app(app)


def test_module_level_metrics_defined_first_are_adopted(
    registry: CollectorRegistry,
) -> None:
    # The original service's prometheus_metrics.py registered these first; flask-appmetrics must not
    # crash with "Duplicated timeseries" but record into the very same collectors.
    http_requests_total = Counter(
        "http_requests_total",
        "Total HTTP requests",
        ["method", "endpoint", "status"],
        registry=registry,
    )
    in_progress = Gauge(
        "http_requests_in_progress", "in progress", ["method", "endpoint"], registry=registry
    )
    duration = Histogram(
        "http_request_duration_seconds", "duration", ["method", "endpoint"], registry=registry
    )
    app = Flask("service")
    add_test_routes(app)
    FlaskMetrics(app, registry=registry)
    app.test_client().get("/items/3")
    item = {"method": "GET", "endpoint": "/items/<int:item_id>"}
    assert own_value(http_requests_total, "http_requests_total", {**item, "status": "200"}) == 1.0
    assert own_value(in_progress, "http_requests_in_progress", item) == 0.0
    assert own_value(duration, "http_request_duration_seconds_sum", item) > 0.0


def own_value(metric: Counter | Gauge | Histogram, sample: str, labels: dict[str, str]) -> float:
    """A value as the collector itself reports it (not through a registry)."""
    (value,) = [
        s.value
        for family in metric.collect()
        for s in family.samples
        if s.name == sample and s.labels == labels
    ]
    return value


@pytest.mark.parametrize(
    ("earlier", "needed"),
    [
        (lambda r: Gauge("http_requests_total", "other type", ["method"], registry=r), "counter"),
        (
            lambda r: Counter(
                "http_requests_total", "other labels", ["method", "path"], registry=r
            ),
            "(method, endpoint, status)",
        ),
        (lambda r: Counter("cache_hit_rate", "a counter", registry=r), "gauge"),
    ],
)
def test_an_incompatible_earlier_collector_is_one_clear_error(
    registry: CollectorRegistry, earlier: object, needed: str
) -> None:
    earlier(registry)  # type: ignore[operator]
    app = Flask("conflict")
    with pytest.raises(MetricConflictError) as info:
        FlaskMetrics(app, registry=registry)
    message = str(info.value)
    assert "already registered as" in message
    assert needed in message
    # Nothing half-initialised: the app is not marked as instrumented, and a retry on a
    # clean registry works.
    assert "appmetrics" not in app.extensions
    FlaskMetrics(app, registry=CollectorRegistry())
    assert "appmetrics" in app.extensions


def test_conflict_leaves_no_partial_metric_set(registry: CollectorRegistry) -> None:
    Counter("cache_hit_rate", "taken", registry=registry)
    with pytest.raises(MetricConflictError):
        FlaskMetrics(Flask("a"), registry=registry)
    names = {m.name for m in registry.collect()}
    assert names == {"cache_hit_rate"}


def test_two_registries_are_isolated() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    app_one, app_two = Flask("one"), Flask("two")
    for app, reg in ((app_one, first), (app_two, second)):
        add_test_routes(app)
        FlaskMetrics(app, registry=reg)
    app_one.test_client().get("/items/1")
    app_one.test_client().get("/items/2")
    app_two.test_client().get("/items/3")
    assert _requests(first) == 2.0
    assert _requests(second) == 1.0


def test_eight_threads_count_exactly(app: Flask, registry: CollectorRegistry) -> None:
    per_thread = 250

    def hammer() -> None:
        client = app.test_client()
        for i in range(per_thread):
            client.get(f"/items/{i}")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _requests(registry) == 8 * per_thread
    count = registry.get_sample_value(
        "http_request_duration_seconds_count", {"method": "GET", "endpoint": "/items/<int:item_id>"}
    )
    assert count == 8 * per_thread
    in_progress = registry.get_sample_value(
        "http_requests_in_progress", {"method": "GET", "endpoint": "/items/<int:item_id>"}
    )
    assert in_progress == 0.0


def test_apps_sharing_a_registry_must_agree_on_buckets(app_factory: AppFactory) -> None:
    # Kept alive: the rule is about apps that still record into the registry.
    first = app_factory()
    from flask_appmetrics import ConfigurationError

    with pytest.raises(ConfigurationError, match="APPMETRICS_BUCKETS"):
        app_factory({"APPMETRICS_BUCKETS": [0.1, 1.0]})
    assert first.extensions["appmetrics"] is not None


def test_state_lives_in_app_extensions_not_on_the_extension(
    metrics: FlaskMetrics, app_factory: AppFactory
) -> None:
    one, two = app_factory(), app_factory()
    assert one.extensions["appmetrics"] is not two.extensions["appmetrics"]
    assert FlaskMetrics.state(one) is one.extensions["appmetrics"]
    assert not any(isinstance(v, Flask) for v in vars(metrics).values())


def test_apps_are_garbage_collected(metrics: FlaskMetrics, registry: CollectorRegistry) -> None:
    # A test suite makes an app per test: none of them may be kept alive by the extension
    # (signal receivers, the most-recent-app pointer, per-registry caches).
    import gc
    import logging
    import weakref

    from flask import got_request_exception

    receivers_before = len(got_request_exception.receivers)
    # Flask logs each failure with its traceback, and pytest keeps log records: that
    # would hold the apps' frames. This test is about our references, not the log's.
    logging.getLogger("collected").disabled = True
    refs = []
    for _ in range(5):
        app = Flask("collected")
        add_test_routes(app)
        metrics.init_app(app)
        app.config["PROPAGATE_EXCEPTIONS"] = False
        app.test_client().get("/boom")
        refs.append(weakref.ref(app))
        del app
    gc.collect()
    logging.getLogger("collected").disabled = False
    assert [ref() for ref in refs] == [None] * 5
    # (Apps of earlier tests may be collected here too, so compare with "at most".)
    assert len(got_request_exception.receivers) <= receivers_before
    # The errors were counted while the apps lived.
    labels = {"endpoint": "/boom", "error_type": "RuntimeError"}
    assert registry.get_sample_value("application_errors_total", labels) == 5.0


def test_registries_are_garbage_collected_with_their_apps() -> None:
    # A suite giving each test a fresh registry must not keep them all: the per-registry
    # caches (metric sets, domain state, user windows, custom metrics) hold them weakly.
    import gc
    import weakref

    refs = []
    for _ in range(5):
        registry = CollectorRegistry()
        app = Flask("short_lived")
        add_test_routes(app)
        metrics = FlaskMetrics(app, registry=registry)
        metrics.counter("orders_total", "Orders")
        app.test_client().get("/items/1")
        app.test_client().get("/metrics")
        refs.append(weakref.ref(registry))
        del registry, app, metrics
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5


def test_init_app_after_the_first_request_is_refused_cleanly(metrics: FlaskMetrics) -> None:
    from flask_appmetrics import AppMetricsError

    app = Flask("late")
    add_test_routes(app)
    app.test_client().get("/items/1")
    with pytest.raises(AppMetricsError, match="after app 'late' served its first request"):
        metrics.init_app(app)
    # Nothing half-installed: no hook of ours, no state, requests unaffected.
    assert "appmetrics" not in app.extensions
    assert not app.before_request_funcs.get(None)
    assert app.test_client().get("/items/1").status_code == 200


def test_an_earlier_histogram_with_other_buckets_is_a_conflict(registry: CollectorRegistry) -> None:
    Histogram(
        "http_request_duration_seconds",
        "duration",
        ["method", "endpoint"],
        registry=registry,
        buckets=(0.5, 1.0),
    )
    with pytest.raises(MetricConflictError, match="buckets"):
        FlaskMetrics(Flask("buckets"), registry=registry)


def test_under_multiprocess_an_earlier_gauge_must_have_our_mode(tmp_path: Path) -> None:
    # Only across processes does a gauge's mode decide what the page shows (livesum for
    # in-progress requests): adopting the original service's default "all" there would be wrong.
    script = """
from flask import Flask
from prometheus_client import CollectorRegistry, Gauge
from flask_appmetrics import FlaskMetrics, MetricConflictError
registry = CollectorRegistry()
Gauge("http_requests_in_progress", "x", ["method", "endpoint"], registry=registry)
try:
    FlaskMetrics(Flask("mp"), registry=registry)
except MetricConflictError as error:
    print("conflict:", error)
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "conflict:" in result.stdout, result.stdout + result.stderr
    assert "multiprocess mode 'all'" in result.stdout
    assert "multiprocess mode 'livesum'" in result.stdout


def test_metric_accessor_returns_the_collector_the_extension_records_into(
    registry: CollectorRegistry,
) -> None:
    from flask_appmetrics.errors import UnknownMetricError

    metrics = FlaskMetrics(registry=registry)
    early = metrics.metric("http_requests_total")  # before init_app: registered now
    app = Flask("accessor")
    app.config["APPMETRICS_BUCKETS"] = [0.1, 1.0]
    add_test_routes(app)
    metrics.init_app(app)
    assert metrics.metric("http_requests_total") is early  # adopted, not replaced
    duration = metrics.metric("http_request_duration_seconds")
    app.test_client().get("/items/5")
    bounds = [
        s.labels["le"]
        for family in duration.collect()
        for s in family.samples
        if s.name.endswith("_bucket")
    ]
    assert bounds == ["0.1", "1.0", "+Inf"]  # the configured buckets
    early.labels("GET", "/items/<int:item_id>", "200").inc()
    assert _requests(registry) == 2.0
    with pytest.raises(UnknownMetricError, match="'orders_total' is not a flask-appmetrics metric"):
        metrics.metric("orders_total")


def test_metric_accessor_reports_an_incompatible_collector(registry: CollectorRegistry) -> None:
    Gauge("http_requests_total", "a gauge", registry=registry)
    with pytest.raises(MetricConflictError, match="http_requests_total"):
        FlaskMetrics(registry=registry).metric("http_requests_total")
