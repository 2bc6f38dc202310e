"""Cache metrics: operations and hit rate, layer sizes at scrape time, Flask-Caching."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import FlaskMetrics, record_cache_event
from flask_appmetrics.integrations.caching import instrument_cache
from tests.support.apps import AppFactory

# The extra ``caching``: skipped, not failed, where only the core is installed.
Cache = pytest.importorskip("flask_caching").Cache


def ops(registry: CollectorRegistry, result: str, operation: str = "get") -> float | None:
    return registry.get_sample_value(
        "cache_operations_total", {"operation": operation, "result": result}
    )


def layer_ops(registry: CollectorRegistry, layer: str, result: str) -> float | None:
    return registry.get_sample_value(
        "cache_layer_operations_total", {"layer": layer, "operation": "get", "result": result}
    )


def scraped(client: FlaskClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of family *name* from a real /metrics scrape, by sorted label pairs."""
    body = client.get("/metrics").get_data(as_text=True)
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        if family.name == name
        for sample in family.samples
    }


# -- helper and hit rate ---------------------------------------------------------------------


def test_get_hit_and_miss_exist_at_zero_from_the_start(client: FlaskClient) -> None:
    samples = scraped(client, "cache_operations")
    assert samples[(("operation", "get"), ("result", "hit"))] == 0.0
    assert samples[(("operation", "get"), ("result", "miss"))] == 0.0


def test_hit_rate_is_computed_from_the_counters(app: Flask, registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("cache_hit_rate") is None  # no get yet: no ratio
    with app.app_context():
        for hit in (True, True, True, False):
            record_cache_event(hit=hit)
        record_cache_event(hit=False, operation="set")  # not a get: not in the rate
    assert ops(registry, "hit") == 3.0
    assert ops(registry, "miss") == 1.0
    assert ops(registry, "miss", operation="set") == 1.0
    assert registry.get_sample_value("cache_hit_rate") == 0.75


def test_events_with_a_layer_are_also_counted_per_layer(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        record_cache_event(hit=True, layer="memory")
        record_cache_event(hit=False, layer="redis")
        record_cache_event(hit=True)
    assert ops(registry, "hit") == 2.0
    assert layer_ops(registry, "memory", "hit") == 1.0
    assert layer_ops(registry, "redis", "miss") == 1.0


# -- layer sizes --------------------------------------------------------------------------


def test_layer_sizes_are_read_at_scrape_time(metrics: FlaskMetrics, client: FlaskClient) -> None:
    store: dict[str, bytes] = {}
    metrics.register_cache_layer(
        "memory",
        size_bytes=lambda: sum(len(v) for v in store.values()),
        items=lambda: len(store),
    )
    assert scraped(client, "cache_items_count")[(("layer", "memory"),)] == 0.0
    store.update(a=b"12345", b=b"678")
    assert scraped(client, "cache_size_bytes")[(("layer", "memory"),)] == 8.0
    assert scraped(client, "cache_items_count")[(("layer", "memory"),)] == 2.0


def test_layers_registered_before_init_app_are_reported(
    registry: CollectorRegistry, app_factory: AppFactory
) -> None:
    early = FlaskMetrics(registry=registry)
    early.register_cache_layer("disk", items=lambda: 7)
    app_factory(ext=early)
    assert registry.get_sample_value("cache_items_count", {"layer": "disk"}) == 7.0


def test_a_failing_size_callable_skips_its_sample_only(
    metrics: FlaskMetrics,
    client: FlaskClient,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> float:
        raise ConnectionError("redis is down")

    metrics.register_cache_layer("redis", size_bytes=broken, items=lambda: 3)
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        response = client.get("/metrics")
    assert response.status_code == 200
    assert registry.get_sample_value("cache_size_bytes", {"layer": "redis"}) is None
    assert registry.get_sample_value("cache_items_count", {"layer": "redis"}) == 3.0
    assert (
        registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "scrape_value"}
        )
        >= 1.0
    )
    assert "redis is down" in caplog.text


def test_register_cache_layer_rejects_bad_arguments(metrics: FlaskMetrics) -> None:
    with pytest.raises(TypeError, match="layer"):
        metrics.register_cache_layer("")
    with pytest.raises(TypeError, match="items"):
        metrics.register_cache_layer("memory", items=3)  # type: ignore[arg-type]


# -- Flask-Caching ------------------------------------------------------------------------


@pytest.fixture
def cache() -> Cache:
    return Cache()


@pytest.fixture
def cached_app(app_factory: AppFactory, cache: Cache) -> Flask:
    app = app_factory({"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300})
    cache.init_app(app)

    @app.get("/slow/<int:n>")
    @cache.cached()
    def slow(n: int) -> str:
        return f"slow {n}"

    @cache.memoize()
    def square(n: int) -> int:
        return n * n

    @app.get("/square/<int:n>")
    def square_view(n: int) -> str:
        return str(square(n))

    assert instrument_cache(cache, app) == "memory"
    return app


def test_direct_get_is_counted_without_changing_the_call(
    cached_app: Flask, cache: Cache, registry: CollectorRegistry
) -> None:
    with cached_app.app_context():
        assert cache.get("missing") is None
        cache.set("k", "v")
        assert cache.get("k") == "v"
        assert cache.get_many("k", "missing", "k") == ["v", None, "v"]
        assert cache.get_dict("k") == {"k": "v"}
    assert ops(registry, "hit") == 4.0
    assert ops(registry, "miss") == 2.0
    assert layer_ops(registry, "memory", "hit") == 4.0
    assert registry.get_sample_value("cache_hit_rate") == pytest.approx(4 / 6)


def test_cached_views_are_counted(cached_app: Flask, registry: CollectorRegistry) -> None:
    client = cached_app.test_client()
    assert client.get("/slow/1").data == b"slow 1"
    assert client.get("/slow/1").data == b"slow 1"
    assert client.get("/slow/1").data == b"slow 1"
    assert client.get("/slow/2").data == b"slow 2"
    assert ops(registry, "miss") == 2.0
    assert ops(registry, "hit") == 2.0


def test_memoized_functions_are_counted_but_not_their_version_keys(
    cached_app: Flask, registry: CollectorRegistry
) -> None:
    client = cached_app.test_client()
    for _ in range(3):
        assert client.get("/square/4").data == b"16"
    # One miss then two hits: the memoize version-hash reads are Flask-Caching's
    # bookkeeping, not lookups of the app's data.
    assert ops(registry, "miss") == 1.0
    assert ops(registry, "hit") == 2.0


def test_simple_cache_size_and_items_are_reported(
    cached_app: Flask, cache: Cache, registry: CollectorRegistry
) -> None:
    layer = {"layer": "memory"}
    assert registry.get_sample_value("cache_items_count", layer) == 0.0
    with cached_app.app_context():
        cache.set("a", "x" * 1000)
        cache.set("b", 1)
    assert registry.get_sample_value("cache_items_count", layer) == 2.0
    assert registry.get_sample_value("cache_size_bytes", layer) > 1000.0


def test_instrumenting_twice_counts_once(
    cached_app: Flask, cache: Cache, registry: CollectorRegistry
) -> None:
    assert instrument_cache(cache, cached_app, layer="ignored") == "memory"
    with cached_app.app_context():
        cache.get("nothing")
    assert ops(registry, "miss") == 1.0


def test_one_cache_object_on_two_apps_counts_each_in_its_own_registry(cache: Cache) -> None:
    registries = (CollectorRegistry(), CollectorRegistry())
    apps = []
    for index, registry in enumerate(registries):
        app = Flask(f"app{index}")
        app.config["CACHE_TYPE"] = "SimpleCache"
        cache.init_app(app)
        FlaskMetrics(app, registry=registry)
        instrument_cache(cache, app)
        apps.append(app)
    with apps[0].app_context():
        cache.get("x")
    with apps[1].app_context():
        cache.set("x", 1)
        cache.get("x")
    assert ops(registries[0], "miss") == 1.0
    assert ops(registries[0], "hit") == 0.0
    assert ops(registries[1], "hit") == 1.0
    assert ops(registries[1], "miss") == 0.0


def test_instrument_cache_needs_both_extensions(app: Flask, cache: Cache) -> None:
    with pytest.raises(RuntimeError, match=r"cache\.init_app"):
        instrument_cache(cache, app)
    bare = Flask("bare")
    bare.config["CACHE_TYPE"] = "SimpleCache"
    cache.init_app(bare)
    with pytest.raises(RuntimeError, match=r"metrics\.init_app"):
        instrument_cache(cache, bare)
