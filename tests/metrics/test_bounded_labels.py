"""Labels fed from input stay bounded: 10,000 random values cannot grow the series count."""

from __future__ import annotations

import random
import string

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import (
    FlaskMetrics,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
)
from tests.support.apps import AppFactory

N = 10_000


def random_names(seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(N)]


def series(registry: CollectorRegistry, family: str, sample: str) -> list[dict[str, str]]:
    return [
        s.labels
        for metric in registry.collect()
        if metric.name == family
        for s in metric.samples
        if s.name == sample
    ]


def test_random_models_and_endpoints_are_capped(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(
        {
            "APPMETRICS_MAX_LABEL_VALUES": 5,
            "APPMETRICS_GEMINI_ENDPOINTS": ["/api/generate"],
            "APPMETRICS_GEMINI_MODELS": ["gemini-1.5-flash"],
        }
    )
    models, endpoints = random_names(1), random_names(2)
    with app.app_context():
        for model, endpoint in zip(models, endpoints, strict=True):
            record_gemini_usage(endpoint, model, tokens=1)
    calls = series(registry, "gemini_api_calls", "gemini_api_calls_total")
    seen_models = {labels["model"] for labels in calls}
    seen_endpoints = {labels["endpoint"] for labels in calls}
    # The configured value, five from input, and "other".
    assert len(seen_models) == 1 + 5 + 1
    assert len(seen_endpoints) == 1 + 5 + 1
    assert "other" in seen_models
    # Every call is still counted, in a bounded number of series.
    assert sum(
        registry.get_sample_value("gemini_api_calls_total", labels) or 0.0 for labels in calls
    ) == float(N)
    assert registry.get_sample_value(
        "gemini_api_calls_total", {"endpoint": "other", "model": "other", "status": "success"}
    ) == float(N - 5)
    # Configured values keep their own series whatever came first.
    with app.app_context():
        record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens=1)
    assert (
        registry.get_sample_value(
            "gemini_api_calls_total",
            {"endpoint": "/api/generate", "model": "gemini-1.5-flash", "status": "success"},
        )
        == 1.0
    )


def test_cache_operations_layers_and_services_are_capped(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_MAX_LABEL_VALUES": 3})
    with app.app_context():
        for name in random_names(3):
            record_cache_event(hit=False, operation=name, layer=name)
            record_circuit_breaker_event(name, "failure")
    operations = {
        labels["operation"]
        for labels in series(registry, "cache_operations", "cache_operations_total")
    }
    # "get" (seeded), three from input, then "other".
    assert "other" in operations
    assert len(operations) == 1 + 3 + 1
    layers = series(registry, "cache_layer_operations", "cache_layer_operations_total")
    assert len({labels["layer"] for labels in layers}) == 3 + 1
    services = series(registry, "circuit_breaker_failures", "circuit_breaker_failures_total")
    assert len(services) == 3 + 1


def test_the_cap_is_per_registry_not_per_app(registry: CollectorRegistry) -> None:
    metrics = FlaskMetrics(registry=registry)
    apps = []
    for index in range(3):
        app = Flask(f"app{index}")
        app.config["APPMETRICS_MAX_LABEL_VALUES"] = 4
        metrics.init_app(app)
        apps.append(app)
    names = random_names(4)
    for index, name in enumerate(names[:300]):
        with apps[index % 3].app_context():
            record_gemini_usage("/api/generate", name)
    calls = series(registry, "gemini_api_calls", "gemini_api_calls_total")
    # No model is configured: four from input, and "other".
    assert len({labels["model"] for labels in calls}) == 4 + 1


def test_custom_metric_labels_are_capped(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    images = metrics.counter("images_generated_total", "Images", ["source"], max_values=10)
    for name in random_names(5):
        images.labels(source=name).inc()
    samples = series(registry, "images_generated", "images_generated_total")
    assert len(samples) == 10 + 1
    assert registry.get_sample_value("images_generated_total", {"source": "other"}) == float(N - 10)
