"""Gemini calls: seeded series, google-genai usage metadata, token breakdown, cost, tracking.

google-genai's own types are built locally (no network): the same objects
``client.models.generate_content`` returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import (
    DEFAULT_GEMINI_PRICES,
    ConfigurationError,
    record_gemini_usage,
    track_gemini_call,
)
from flask_appmetrics.integrations.genai import TokenUsage, token_usage
from tests.support.apps import AppFactory

# The extra ``genai``: skipped, not failed, where only the core is installed.
types = pytest.importorskip("google.genai.types")

GEN = {"endpoint": "/api/generate", "model": "gemini-1.5-flash"}


def response(
    prompt: int, candidates: int, thoughts: int | None = None, cached: int | None = None
) -> types.GenerateContentResponse:
    total = prompt + candidates + (thoughts or 0)
    return types.GenerateContentResponse(
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            candidates_token_count=candidates,
            thoughts_token_count=thoughts,
            cached_content_token_count=cached,
            total_token_count=total,
        )
    )


def usage(registry: CollectorRegistry, token_type: str, **labels: str) -> float | None:
    return registry.get_sample_value(
        "gemini_api_token_usage_total", {**GEN, **labels, "token_type": token_type}
    )


def cost(registry: CollectorRegistry, **labels: str) -> float | None:
    return registry.get_sample_value("gemini_api_cost_usd_total", {**GEN, **labels})


def test_a_plain_app_has_no_gemini_series_before_a_call(client: FlaskClient) -> None:
    body = client.get("/metrics").get_data(as_text=True)
    calls = {
        (s.labels["endpoint"], s.labels["model"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(body)
        if family.name == "gemini_api_calls"
        for s in family.samples
        if s.name == "gemini_api_calls_total"
    }
    # No endpoint or model is configured by default: none is shown before it is used.
    assert calls == {}


def test_configured_endpoints_and_models_are_seeded(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app_factory(
        {
            "APPMETRICS_GEMINI_ENDPOINTS": ["/api/explain", "/api/subtopics"],
            "APPMETRICS_GEMINI_MODELS": ["gemini-2.5-flash", "gemini-2.5-pro"],
        }
    )
    for endpoint in ("/api/explain", "/api/subtopics"):
        for model in ("gemini-2.5-flash", "gemini-2.5-pro"):
            labels = {"endpoint": endpoint, "model": model}
            assert (
                registry.get_sample_value("gemini_api_calls_total", {**labels, "status": "error"})
                == 0.0
            )
            assert registry.get_sample_value("gemini_api_tokens_total", labels) == 0.0
            assert registry.get_sample_value("gemini_api_cost_usd_total", labels) == 0.0


def test_usage_metadata_of_a_real_response(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage(
            duration=0.8, usage_metadata=response(1000, 200, thoughts=50, cached=400), **GEN
        )
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 1250.0
    assert usage(registry, "input") == 1000.0
    # Output includes the reasoning tokens (OpenTelemetry's and Gemini's billing's count);
    # thoughts is that part of it shown on its own, as cached is of input.
    assert usage(registry, "output") == 250.0
    assert usage(registry, "thoughts") == 50.0
    assert usage(registry, "cached") == 400.0
    # gemini-1.5-flash: 0.075 input, 0.01875 cached, 0.30 output, per million tokens.
    expected = (600 * 0.075 + 400 * 0.01875 + 250 * 0.30) / 1_000_000
    assert cost(registry) == pytest.approx(expected)
    assert registry.get_sample_value("quota_tokens_current_minute") == 1250.0


@pytest.mark.parametrize(
    "source",
    [
        response(10, 5),
        response(10, 5).usage_metadata,
        {"prompt_token_count": 10, "candidates_token_count": 5, "total_token_count": 15},
        response(10, 5).model_dump(),
    ],
    ids=["response", "usage_metadata", "mapping", "response-dict"],
)
def test_token_usage_accepts_response_metadata_or_mapping(source: object) -> None:
    assert token_usage(source) == TokenUsage(input=10, output=5, total=15)


def test_a_response_without_usage_metadata_has_no_tokens() -> None:
    assert token_usage(types.GenerateContentResponse()) == TokenUsage()


@pytest.mark.parametrize("source", [object(), {"tokens": 3}, 42])
def test_something_else_is_refused(source: object) -> None:
    with pytest.raises(TypeError, match="usage_metadata"):
        token_usage(source)


def test_plain_token_count_without_breakdown(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage("/api/generate", "gemini-1.5-flash", 300, 1.2)
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 300.0
    # Without a breakdown no tokens by type are counted (nor created: the endpoint and
    # model are not configured), and a total alone cannot be priced.
    assert not usage(registry, "input")
    assert not cost(registry)


def test_explicit_counts_override_metadata(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage(usage_metadata=response(10, 5), output_tokens=7, tokens=17, **GEN)
    assert usage(registry, "output") == 7.0
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 17.0


def test_prices_match_by_longest_prefix_and_unknown_models_cost_nothing(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        record_gemini_usage("/api/generate", "gemini-2.5-flash-lite-001", input_tokens=1_000_000)
        record_gemini_usage("/api/generate", "models/gemini-2.5-flash", input_tokens=1_000_000)
        record_gemini_usage("/api/generate", "my-own-model", input_tokens=1_000_000)
    assert cost(registry, model="gemini-2.5-flash-lite-001") == pytest.approx(0.10)
    assert cost(registry, model="models/gemini-2.5-flash") == pytest.approx(0.30)
    assert cost(registry, model="my-own-model") is None


def test_configured_prices(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    prices = {**DEFAULT_GEMINI_PRICES, "my-own-model": {"input": 2.0, "output": 8.0}}
    app = app_factory({"APPMETRICS_GEMINI_PRICES": prices})
    with app.app_context():
        record_gemini_usage(
            "/api/generate", "my-own-model", input_tokens=500_000, output_tokens=250_000
        )
    assert cost(registry, model="my-own-model") == pytest.approx(1.0 + 2.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APPMETRICS_GEMINI_PRICES", {"m": {"input": 1.0}}),
        ("APPMETRICS_GEMINI_PRICES", {"m": {"input": -1.0, "output": 1.0}}),
        ("APPMETRICS_GEMINI_PRICES", {"m": {"input": 1.0, "output": 1.0, "outptu": 2.0}}),
        ("APPMETRICS_GEMINI_PRICES", [("m", 1.0)]),
        ("APPMETRICS_GEMINI_MODELS", '["gemini-1.5-flash"'),
        ("APPMETRICS_GEMINI_ENDPOINTS", [""]),
        ("APPMETRICS_MAX_LABEL_VALUES", 0),
    ],
)
def test_bad_gemini_config_fails_at_start(app_factory: AppFactory, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        app_factory({key: value})


def test_errors_are_counted_by_status(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage(status="error", duration=30.0, **GEN)
    assert registry.get_sample_value("gemini_api_calls_total", {**GEN, "status": "error"}) == 1.0
    assert registry.get_sample_value("gemini_api_duration_seconds_count", GEN) == 1.0


def test_track_gemini_call_with_a_real_response(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        with track_gemini_call(**GEN) as call:
            call.record_response(response(100, 20, thoughts=5))

        @track_gemini_call(**GEN)
        def generate() -> types.GenerateContentResponse:
            return response(50, 10)

        generate()
    assert registry.get_sample_value("gemini_api_calls_total", {**GEN, "status": "success"}) == 2.0
    assert usage(registry, "input") == 150.0
    assert usage(registry, "thoughts") == 5.0
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 185.0
    assert registry.get_sample_value("gemini_api_duration_seconds_count", GEN) == 2.0


def test_track_gemini_call_times_async_calls(app: Flask, registry: CollectorRegistry) -> None:
    @track_gemini_call(**GEN)
    async def generate(fail: bool) -> types.GenerateContentResponse:
        await asyncio.sleep(0)
        if fail:
            raise RuntimeError("deadline exceeded")
        return response(8, 2)

    async def main() -> None:
        await generate(False)
        with pytest.raises(RuntimeError):
            await generate(True)
        async with track_gemini_call(**GEN) as call:
            call.usage(tokens=5)

    with app.app_context():
        asyncio.run(main())
    assert registry.get_sample_value("gemini_api_calls_total", {**GEN, "status": "success"}) == 2.0
    assert registry.get_sample_value("gemini_api_calls_total", {**GEN, "status": "error"}) == 1.0
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 15.0
