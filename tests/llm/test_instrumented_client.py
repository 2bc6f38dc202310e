"""``instrument_client``: a real google-genai client, calling a local server that speaks the
Gemini REST API, recorded with no other change to the calling code.

Sync and async calls, every answer and failure the API gives (normal, thinking, cached
prompt, safety block, blocked prompt, truncated answer, 429 with and without its quota
details, 400, 403, 500, 503, a timeout, a refused connection), embeddings and token
counting, and what instrumenting does to the client object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics.integrations.genai import (
    instrument_client,
    is_instrumented,
    uninstrument_client,
)
from tests.support.apps import AppFactory
from tests.support.gemini import FakeGemini, scenario

genai_errors = pytest.importorskip("google.genai.errors")

MODEL = "gemini-2.5-flash"
BACKGROUND = {"endpoint": "<background>", "model": MODEL}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def otel(**labels: str) -> dict[str, str]:
    return {
        "gen_ai_operation_name": "generate_content",
        "gen_ai_provider_name": "gcp.gemini",
        "gen_ai_request_model": MODEL,
        "gen_ai_response_model": f"{MODEL}-001",
        **labels,
    }


def test_a_call_in_a_request_is_labelled_with_the_url_rule(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    @app.post("/api/generate/<topic>")
    def generate(topic: str) -> str:
        response = genai_client.models.generate_content(model=f"models/{MODEL}", contents=topic)
        return str(response.text)

    assert app.test_client().post("/api/generate/jazz").status_code == 200
    labels = {"endpoint": "/api/generate/<topic>", "model": MODEL}  # the rule, not the URL
    assert value(registry, "gemini_api_calls_total", **labels, status="success") == 1
    assert value(registry, "gemini_api_duration_seconds_count", **labels) == 1
    input_tokens = value(registry, "gemini_api_token_usage_total", **labels, token_type="input")
    output = value(registry, "gemini_api_token_usage_total", **labels, token_type="output")
    assert input_tokens > 0
    assert output > 0
    assert value(registry, "gemini_api_tokens_total", **labels) == input_tokens + output
    # gemini-2.5-flash: 0.30 USD input, 2.50 USD output per million tokens.
    cost = value(registry, "gemini_api_cost_usd_total", **labels)
    assert cost == pytest.approx((input_tokens * 0.30 + output * 2.50) / 1e6)
    assert (
        value(registry, "gemini_api_finish_reasons_total", model=MODEL, finish_reason="STOP") == 1
    )
    assert value(registry, "quota_requests_current_minute") == 1
    assert value(registry, "quota_tokens_today") == input_tokens + output
    assert value(registry, "gemini_api_spend_today_usd") == pytest.approx(cost)
    # The OpenTelemetry instruments, with the conventions' attributes and buckets.
    assert (
        value(registry, "gen_ai_client_operation_duration_seconds_count", **otel(error_type=""))
        == 1
    )
    assert (
        value(
            registry,
            "gen_ai_client_operation_duration_seconds_bucket",
            **otel(error_type="", le="81.92"),
        )
        == 1
    )
    tokens = {**otel(), "gen_ai_token_type": "input"}
    assert value(registry, "gen_ai_client_token_usage_sum", **tokens) == input_tokens
    assert value(registry, "gen_ai_client_token_usage_bucket", **tokens, le="6.7108864e+07") == 1
    output_tokens = {**otel(), "gen_ai_token_type": "output"}
    assert value(registry, "gen_ai_client_token_usage_sum", **output_tokens) == output
    # Not a stream: no time to first chunk.
    assert (
        registry.get_sample_value(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count", otel()
        )
        is None
    )


def test_outside_a_request_the_configured_endpoint(
    app_factory: AppFactory, registry: CollectorRegistry, genai_client: Any
) -> None:
    app = app_factory()
    genai_client.models.generate_content(model=MODEL, contents="hi")
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 1
    other = CollectorRegistry()
    from flask_appmetrics import FlaskMetrics

    second = Flask("jobs")
    second.config["APPMETRICS_GEMINI_DEFAULT_ENDPOINT"] = "nightly-job"
    FlaskMetrics(second, registry=other)
    with second.app_context():
        genai_client.models.generate_content(model=MODEL, contents="hi")
    labels = {"endpoint": "nightly-job", "model": MODEL, "status": "success"}
    assert value(other, "gemini_api_calls_total", **labels) == 1
    assert app is not None


def test_thinking_and_cached_tokens_follow_the_token_semantics(
    app: Flask, registry: CollectorRegistry, genai_client: Any, gemini: FakeGemini
) -> None:
    thinking = genai_client.models.generate_content(
        model=MODEL, contents="think", config=scenario("thinking")
    )
    usage = thinking.usage_metadata
    assert usage.thoughts_token_count > 0
    by_type = {
        t: value(registry, "gemini_api_token_usage_total", **BACKGROUND, token_type=t)
        for t in ("input", "output", "thoughts", "cached")
    }
    # output includes the reasoning tokens; thoughts is the part of it shown on its own.
    assert by_type["output"] == usage.candidates_token_count + usage.thoughts_token_count
    assert by_type["thoughts"] == usage.thoughts_token_count
    assert by_type["input"] + by_type["output"] == usage.total_token_count
    cached = genai_client.models.generate_content(
        model=MODEL, contents="a long shared prefix", config=scenario("cached")
    ).usage_metadata
    assert (
        value(registry, "gemini_api_token_usage_total", **BACKGROUND, token_type="cached")
        == cached.cached_content_token_count
    )
    # Cost: cached prompt tokens at 0.03, the rest of the prompt at 0.30, output and
    # thoughts at 2.50 USD per million.
    fresh_prompt = (
        usage.prompt_token_count + cached.prompt_token_count - cached.cached_content_token_count
    )
    expected = (
        fresh_prompt * 0.30
        + cached.cached_content_token_count * 0.03
        + (by_type["output"] + cached.candidates_token_count) * 2.50
    ) / 1e6
    assert value(registry, "gemini_api_cost_usd_total", **BACKGROUND) == pytest.approx(expected)
    output = {**otel(), "gen_ai_token_type": "output"}
    assert value(registry, "gen_ai_client_token_usage_sum", **output) == (
        by_type["output"] + cached.candidates_token_count
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [("safety", "SAFETY"), ("max-tokens", "MAX_TOKENS"), ("prompt-blocked", "PROMPT_SAFETY")],
)
def test_a_blocked_or_truncated_answer_is_a_success_with_its_finish_reason(
    app: Flask, registry: CollectorRegistry, genai_client: Any, name: str, reason: str
) -> None:
    response = genai_client.models.generate_content(
        model=MODEL, contents="x", config=scenario(name)
    )
    assert response.usage_metadata.prompt_token_count > 0
    # The HTTP call succeeded: a success, whose finish reason says what happened.
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 1
    assert (
        value(registry, "gemini_api_finish_reasons_total", model=MODEL, finish_reason=reason) == 1
    )
    assert (
        value(registry, "gemini_api_finish_reasons_total", model=MODEL, finish_reason="STOP") == 0
    )


@pytest.mark.parametrize(
    ("name", "error_type"),
    [
        ("400", "INVALID_ARGUMENT"),
        ("403", "PERMISSION_DENIED"),
        ("500", "INTERNAL"),
        ("503", "UNAVAILABLE"),
        ("429", "RESOURCE_EXHAUSTED"),
    ],
)
def test_api_errors_by_type(
    app: Flask, registry: CollectorRegistry, genai_client: Any, name: str, error_type: str
) -> None:
    with pytest.raises(genai_errors.APIError) as raised:
        genai_client.models.generate_content(model=MODEL, contents="x", config=scenario(name))
    assert raised.value.code == int(name)  # the caller sees google-genai's own error
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="error") == 1
    errors = {**BACKGROUND, "error_type": error_type}
    assert value(registry, "gemini_api_errors_total", **errors) == 1
    failed = {
        **otel(error_type=error_type),
        "gen_ai_response_model": "",  # no response: no response model
    }
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **failed) == 1
    # A call that reached the API counts against the quota, refused or not.
    assert value(registry, "quota_requests_today") == 1
    refused = value(registry, "quota_refused_total", model=MODEL, limit="rpm")
    assert refused == (1 if name == "429" else 0)


def test_a_429_is_a_quota_refusal_and_teaches_the_limit(
    app: Flask, registry: CollectorRegistry, genai_client: Any, gemini: FakeGemini
) -> None:
    gemini.rpm_limit = 12
    with pytest.raises(genai_errors.ClientError):
        genai_client.models.generate_content(model=MODEL, contents="x", config=scenario("429"))
    # No APPMETRICS_QUOTA_* limit is configured: the limit the API named is exported.
    learned = {"model": MODEL, "limit": "rpm", "source": "reported"}
    assert value(registry, "quota_learned_limit", **learned) == 12
    for _ in range(3):
        genai_client.models.generate_content(model="gemini-2.5-pro", contents="x")
    with pytest.raises(genai_errors.ClientError):
        genai_client.models.generate_content(
            model="gemini-2.5-pro", contents="x", config=scenario("429-bare")
        )
    # Without the API's details: what went through in the minute of the refusal.
    observed = {"model": "gemini-2.5-pro", "source": "observed"}
    assert value(registry, "quota_learned_limit", **observed, limit="rpm") == 3
    assert value(registry, "quota_learned_limit", **observed, limit="tpm") > 0
    assert value(registry, "quota_refused_total", model="gemini-2.5-pro", limit="unknown") == 1


def test_no_learned_limit_when_limits_are_configured(
    app_factory: AppFactory, registry: CollectorRegistry, genai_client: Any
) -> None:
    app_factory({"APPMETRICS_QUOTA_RPM": 100})
    with pytest.raises(genai_errors.ClientError):
        genai_client.models.generate_content(model=MODEL, contents="x", config=scenario("429"))
    assert value(registry, "quota_refused_total", model=MODEL, limit="rpm") == 1
    assert (
        registry.get_sample_value(
            "quota_learned_limit", {"model": MODEL, "limit": "rpm", "source": "reported"}
        )
        is None
    )


def test_a_timeout_and_a_refused_connection(
    app: Flask, registry: CollectorRegistry, gemini: FakeGemini, make_client: Callable[..., Any]
) -> None:
    gemini.slow_seconds = 0.5
    slow = instrument_client(make_client(timeout=0.1))
    with pytest.raises(Exception, match="timed out") as raised:
        slow.models.generate_content(model=MODEL, contents="x", config=scenario("slow"))
    assert "Timeout" in type(raised.value).__name__  # the HTTP library's own
    assert value(registry, "gemini_api_errors_total", **BACKGROUND, error_type="timeout") == 1
    assert 0.1 <= value(registry, "gemini_api_duration_seconds_sum", **BACKGROUND) < 0.5
    closed = instrument_client(make_client("http://127.0.0.1:9"))
    with pytest.raises(Exception, match="refused") as raised:
        closed.models.generate_content(model=MODEL, contents="x")
    assert "Connect" in type(raised.value).__name__
    errors = {**BACKGROUND, "error_type": "connection_error"}
    assert value(registry, "gemini_api_errors_total", **errors) == 1


def test_async_calls(app: Flask, registry: CollectorRegistry, genai_client: Any) -> None:
    async def main() -> None:
        await genai_client.aio.models.generate_content(model=MODEL, contents="hi")
        with pytest.raises(genai_errors.ServerError):
            await genai_client.aio.models.generate_content(
                model=MODEL, contents="hi", config=scenario("503")
            )
        await genai_client.aio.models.count_tokens(model=MODEL, contents="hi")
        await genai_client.aio.aclose()

    with app.app_context():
        asyncio.run(main())
    labels = {"endpoint": "<background>", "model": MODEL}
    assert value(registry, "gemini_api_calls_total", **labels, status="success") == 1
    assert value(registry, "gemini_api_errors_total", **labels, error_type="UNAVAILABLE") == 1
    assert value(registry, "gemini_api_token_usage_total", **labels, token_type="output") > 0
    counted = otel(error_type="", gen_ai_operation_name="count_tokens", gen_ai_response_model="")
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **counted) == 1


def test_embeddings_and_token_counting_are_their_own_operations(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    embedded = genai_client.models.embed_content(model="text-embedding-004", contents="hello")
    assert embedded.embeddings
    assert genai_client.models.count_tokens(model=MODEL, contents="hello").total_tokens > 0
    embeddings = {"endpoint": "<background>", "model": "text-embedding-004", "status": "success"}
    assert value(registry, "gemini_api_calls_total", **embeddings) == 1
    operations = {
        "gen_ai_provider_name": "gcp.gemini",
        "gen_ai_response_model": "",
        "error_type": "",
    }
    embed = {
        **operations,
        "gen_ai_operation_name": "embeddings",
        "gen_ai_request_model": "text-embedding-004",
    }
    count = {**operations, "gen_ai_operation_name": "count_tokens", "gen_ai_request_model": MODEL}
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **embed) == 1
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **count) == 1
    # Counting tokens is free and generates nothing: no call, no quota.
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 0
    assert value(registry, "quota_requests_today") == 1


def test_instrumenting_twice_changes_nothing_and_uninstrument_undoes_it(
    app: Flask, registry: CollectorRegistry, make_client: Callable[..., Any]
) -> None:
    genai_client = make_client()
    untouched = make_client()
    class_method = type(genai_client.models).generate_content
    instrument_client(genai_client)
    instrument_client(genai_client)
    assert is_instrumented(genai_client)
    assert not is_instrumented(untouched)
    genai_client.models.generate_content(model=MODEL, contents="x")
    untouched.models.generate_content(model=MODEL, contents="x")
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 1
    uninstrument_client(genai_client)
    uninstrument_client(genai_client)  # no error the second time
    assert not is_instrumented(genai_client)
    assert genai_client.models.generate_content.__func__ is class_method
    genai_client.models.generate_content(model=MODEL, contents="x")
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 1


def test_chats_are_recorded_through_the_models(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    chat = genai_client.chats.create(model=MODEL)
    chat.send_message("hello")
    chat.send_message("again")
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 2


def test_a_vertex_ai_client_reports_its_provider(
    app: Flask, registry: CollectorRegistry, make_client: Callable[..., Any]
) -> None:
    genai_client = instrument_client(make_client(vertexai=True))
    genai_client.models.generate_content(model=MODEL, contents="x")
    vertex = otel(error_type="", gen_ai_provider_name="gcp.vertex_ai")
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **vertex) == 1


def test_a_call_pinned_to_an_app(
    app_factory: AppFactory, registry: CollectorRegistry, make_client: Callable[..., Any]
) -> None:
    from flask_appmetrics import FlaskMetrics

    pinned_registry = CollectorRegistry()
    pinned = Flask("pinned")
    FlaskMetrics(pinned, registry=pinned_registry)
    latest = app_factory()  # initialised after: the default target
    genai_client = instrument_client(make_client(), app=pinned)
    with latest.app_context():
        genai_client.models.generate_content(model=MODEL, contents="x")
    assert value(pinned_registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 1
    assert value(registry, "gemini_api_calls_total", **BACKGROUND, status="success") == 0


def test_not_a_client_is_refused() -> None:
    with pytest.raises(TypeError, match="client"):
        instrument_client(object())
