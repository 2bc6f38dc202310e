"""Label values are capped in length, and bad input is logged in bounded, rate-limited lines.

Hostile values reach labels through the public helpers (a model name or cache layer taken
from a request, a business label, a custom metric's label): each is capped at
``APPMETRICS_MAX_LABEL_LENGTH`` UTF-8 bytes (a longer one keeps its first bytes, then
``~`` and 8 hex digits of its BLAKE2b hash), so the ``/metrics`` page stays small whatever
clients send.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import pytest
from flask import Flask, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import EnvironBuilder, run_wsgi_app

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    record_business_event,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
)
from flask_appmetrics.metrics.labels import cap_length
from flask_appmetrics.recording import validation
from tests.support.apps import AppFactory

MB = 1024 * 1024
LIMIT = 128


def huge(index: int, size: int = MB) -> str:
    """A distinct value of *size* characters; all share their first kilobyte."""
    return ("x" * 1024 + f"-{index}-").ljust(size, "y")


def expected(value: str, limit: int = LIMIT) -> str:
    """The documented form, computed here independently."""
    digest = hashlib.blake2b(value.encode(), digest_size=4).hexdigest()
    return value.encode()[: limit - 9].decode("utf-8", "ignore") + "~" + digest


def page(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def all_label_values(body: bytes) -> list[str]:
    return [
        value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        for value in sample.labels.values()
    ]


def test_megabyte_values_through_every_helper_keep_the_page_small(
    app_factory: AppFactory, metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_MAX_LABEL_VALUES": 50})
    metrics.counter("images_generated_total", "Images", ["source"])
    quality = metrics.histogram("content_quality_score", "Quality", ["content_type"])
    baseline = len(page(registry))
    values = [huge(index) for index in range(25)]
    with app.app_context():
        for value in values:
            record_gemini_usage(value, value, tokens=1, duration=0.1)
            record_cache_event(hit=False, operation=value, layer=value)
            record_circuit_breaker_event(value, "failure")
            record_business_event("images_generated_total", labels={"source": value})
            quality.labels(content_type=value).observe(0.5)
    body = page(registry)
    # 25 new series in a dozen families (a Gemini call alone: seven, two of them histograms),
    # each label at most 128 bytes: hundreds of kilobytes
    # (850 MB without the cap).
    assert len(body) - baseline < 600_000, len(body)
    assert max(len(v.encode()) for v in all_label_values(body)) <= LIMIT
    # Every call counted; distinct long values stay distinct, in the documented form.
    model_labels = {
        labels["model"]
        for family in text_string_to_metric_families(body.decode())
        if family.name == "gemini_api_calls"
        for labels in (s.labels for s in family.samples)
    }
    assert {expected(value) for value in values} <= model_labels
    for value in values:
        labels = {"endpoint": expected(value), "model": expected(value), "status": "success"}
        assert registry.get_sample_value("gemini_api_calls_total", labels) == 1.0
        service = {"service": expected(value)}
        assert registry.get_sample_value("circuit_breaker_failures_total", service) == 1.0
        source = {"source": expected(value)}
        assert registry.get_sample_value("images_generated_total", source) == 1.0
        cache = {"layer": expected(value), "operation": expected(value), "result": "miss"}
        assert registry.get_sample_value("cache_layer_operations_total", cache) == 1.0


def test_the_same_long_value_always_maps_to_the_same_label(
    app: Flask, registry: CollectorRegistry
) -> None:
    value = huge(7, size=10_000)
    with app.app_context():
        record_gemini_usage("/api/generate", value, tokens=1)
        record_gemini_usage("/api/generate", "".join(list(value)), tokens=1)  # another object
    labels = {"endpoint": "/api/generate", "model": expected(value), "status": "success"}
    assert registry.get_sample_value("gemini_api_calls_total", labels) == 2.0
    # The hash does not depend on the process (unlike hash()): a fixed expectation.
    assert cap_length("a" * 200, 20) == "aaaaaaaaaaa~a955c32c"


def test_long_values_count_against_the_cardinality_cap(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_MAX_LABEL_VALUES": 3})
    with app.app_context():
        for index in range(10):
            record_circuit_breaker_event(huge(index, size=5_000), "failure")
    services = {
        s.labels["service"]
        for family in registry.collect()
        if family.name == "circuit_breaker_failures"
        for s in family.samples
        if s.name == "circuit_breaker_failures_total"
    }
    assert services == {expected(huge(i, size=5_000)) for i in range(3)} | {"other"}
    assert registry.get_sample_value("circuit_breaker_failures_total", {"service": "other"}) == 7


def test_multibyte_values_are_cut_on_a_character_boundary() -> None:
    value = "é中😀" * 100
    capped = cap_length(value, 32)
    assert len(capped.encode("utf-8")) <= 32
    assert value.startswith(capped[:-9])
    assert capped == expected(value, 32)
    assert cap_length("é" * 16, 32) == "é" * 16  # 32 bytes: fits as is
    assert cap_length("é" * 17, 32) != "é" * 17


def test_a_lone_surrogate_no_longer_breaks_every_later_scrape(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        record_gemini_usage("/api/generate", "bad\ud800model", tokens=1)
    values = all_label_values(page(registry))  # encoding the page raised before
    assert any(v.startswith("bad?model~") for v in values)


def test_the_cap_is_configurable_and_reaches_custom_metrics_declared_earlier(
    metrics: FlaskMetrics, app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    jobs = metrics.counter("jobs_total", "Jobs", ["queue"])  # before init_app, as at import
    app = app_factory({"APPMETRICS_MAX_LABEL_LENGTH": 32})
    with app.app_context():
        record_cache_event(layer="l" * 100)
    jobs.labels(queue="q" * 100).inc()
    assert registry.get_sample_value("jobs_total", {"queue": expected("q" * 100, 32)}) == 1.0
    layer = {"layer": expected("l" * 100, 32), "operation": "get", "result": "hit"}
    assert registry.get_sample_value("cache_layer_operations_total", layer) == 1.0


@pytest.mark.parametrize("value", [15, 0, -1, "128 bytes", 2.5, None])
def test_a_bad_cap_fails_at_start(app_factory: AppFactory, value: object) -> None:
    with pytest.raises(ConfigurationError, match="APPMETRICS_MAX_LABEL_LENGTH"):
        app_factory({"APPMETRICS_MAX_LABEL_LENGTH": value})


def test_apps_sharing_a_registry_agree_on_the_cap(app_factory: AppFactory, app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="APPMETRICS_MAX_LABEL_LENGTH"):
        app_factory({"APPMETRICS_MAX_LABEL_LENGTH": 64})


# -- logging bad input --------------------------------------------------------------------


def test_a_huge_bad_value_is_logged_in_a_short_line(
    app: Flask, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    token_string = "1" * (20 * MB)  # tokens read from a response as text, by mistake
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens=token_string)  # type: ignore[arg-type]
        record_business_event("undeclared_" + "x" * MB)
        record_gemini_usage(
            "/api/generate", "gemini-1.5-flash", usage_metadata={"x" * MB: 1, "y": 2}
        )
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert all(len(message) < 1000 for message in messages), [len(m) for m in messages]
    assert "tokens:" in messages[0]
    assert "metric:" in messages[1]
    assert "usage_metadata" in messages[2]


def test_strict_mode_still_raises_with_a_short_message(app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    with app.app_context(), pytest.raises(TypeError, match=r"^tokens:") as raised:
        record_gemini_usage("/api/generate", "m", tokens="1" * (20 * MB))  # type: ignore[arg-type]
    assert len(str(raised.value)) < 1000


def bad_call() -> None:
    record_cache_event(hit="not a bool")  # type: ignore[arg-type]


def test_refusals_are_logged_once_per_call_site_per_interval(
    app: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation, "LOG_INTERVAL_SECONDS", 0.2)
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        for _ in range(1000):
            bad_call()
        record_cache_event(operation="")  # another call site: its own line
        assert len(caplog.records) == 2
        assert "test_label_length.py" in caplog.records[0].getMessage()
        time.sleep(0.25)
        bad_call()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert "hit:" in messages[0]
    assert "operation:" in messages[1]
    assert "and 999 more from there" in messages[2]


def test_call_sites_remembered_are_bounded() -> None:
    limiter = validation._RateLimitedLog()
    code = "\n".join(f"limiter.log('x', ValueError('v: bad'))  # {i}" for i in range(2000))
    exec(compile(code, "many_sites.py", "exec"), {"limiter": limiter})  # 2,000 call sites
    assert len(limiter._sites) <= 256


# -- in a host app, served as a WSGI server serves it ------------------------------------------


def serve(app: Flask, method: str, path: str, body: bytes = b"") -> tuple[str, bytes]:
    """Call the app, iterate the body and close it, as a WSGI server does."""
    environ = EnvironBuilder(
        method=method, path=path, data=body, content_type="application/json"
    ).get_environ()
    iterable, status, _ = run_wsgi_app(app, environ)
    try:
        return status, b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()


def test_an_api_taking_the_model_from_its_clients(registry: CollectorRegistry) -> None:
    """An LLM proxy that labels calls by the model its client asks for, and 25 clients
    asking for 1 MB model names."""
    app = Flask("llm_proxy")
    metrics = FlaskMetrics(registry=registry)
    metrics.init_app(app)

    @app.post("/v1/generate")
    def generate() -> dict[str, str]:
        payload = request.get_json()
        record_gemini_usage("/v1/generate", payload["model"], tokens=12, duration=0.2)
        record_cache_event(hit=False, layer=payload.get("cache", "memory"))
        return {"text": "ok"}

    status, first_page = serve(app, "GET", "/metrics")
    assert status.startswith("200")
    for index in range(25):
        value = huge(index)
        body = json.dumps({"model": value, "cache": value}).encode()
        assert serve(app, "POST", "/v1/generate", body)[0].startswith("200")
    status, page_body = serve(app, "GET", "/metrics")
    assert status.startswith("200")
    # 20 distinct models kept (APPMETRICS_MAX_LABEL_VALUES), then "other"; some KiB each
    # (the gen_ai_* duration histogram has 14 buckets).
    assert len(page_body) - len(first_page) < 350_000, len(page_body)
    assert max(len(v.encode()) for v in all_label_values(page_body)) <= LIMIT
    requests_total = registry.get_sample_value(
        "http_requests_total", {"method": "POST", "endpoint": "/v1/generate", "status": "200"}
    )
    assert requests_total == 25.0


def test_a_configured_model_longer_than_the_cap_is_seeded_and_recorded_alike(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    model = "tuned-" + "m" * 200
    app = app_factory(
        {"APPMETRICS_GEMINI_ENDPOINTS": ["/api/generate"], "APPMETRICS_GEMINI_MODELS": [model]}
    )
    labels = {"endpoint": "/api/generate", "model": expected(model), "status": "success"}
    assert registry.get_sample_value("gemini_api_calls_total", labels) == 0.0
    with app.app_context():
        record_gemini_usage("/api/generate", model, tokens=1)
    assert registry.get_sample_value("gemini_api_calls_total", labels) == 1.0
