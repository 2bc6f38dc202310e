"""Every call counted once, and only calls counted: an instrumented client inside a
``track_gemini_call`` block, and calls a real pybreaker circuit breaker refuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pybreaker
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import record_gemini_usage, track_gemini_call
from flask_appmetrics.integrations.pybreaker import monitor_breaker
from tests.support.gemini import scenario

genai_errors = pytest.importorskip("google.genai.errors")

MODEL = "gemini-2.5-flash"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def total_calls(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "gemini_api_calls"
        for sample in family.samples
        if sample.name == "gemini_api_calls_total"
    )


# -- an instrumented client inside track_gemini_call ---------------------------------------


def test_a_block_around_client_calls_records_nothing_itself(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    with app.app_context(), track_gemini_call("/api/summary", "my-label") as call:
        first = genai_client.models.generate_content(model=MODEL, contents="a")
        genai_client.models.generate_content(model=MODEL, contents="b")
        call.record_response(first)  # as code written before the client was instrumented
    # Two calls, each once, by the client, with the block's endpoint.
    assert total_calls(registry) == 2
    labels = {"endpoint": "/api/summary", "model": MODEL, "status": "success"}
    assert value(registry, "gemini_api_calls_total", **labels) == 2
    assert value(registry, "quota_requests_today") == 2


def test_a_decorated_function_and_a_decorated_stream_around_client_calls(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    @track_gemini_call("/api/answer", MODEL)
    def answer() -> Any:
        return genai_client.models.generate_content(model=MODEL, contents="a")

    @track_gemini_call("/api/stream", MODEL)
    def stream() -> Iterator[str]:
        for chunk in genai_client.models.generate_content_stream(model=MODEL, contents="b"):
            yield chunk.text or ""

    with app.app_context():
        answer()
        assert "".join(stream())
    assert total_calls(registry) == 2
    for endpoint in ("/api/answer", "/api/stream"):
        labels = {"endpoint": endpoint, "model": MODEL, "status": "success"}
        assert value(registry, "gemini_api_calls_total", **labels) == 1
    stream_labels = {"endpoint": "/api/stream", "model": MODEL}
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **stream_labels) == 1


def test_a_block_without_client_calls_still_records(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    with app.app_context():
        with track_gemini_call("/api/summary", MODEL):
            pass
        # The block that did call the client is over: the next one is on its own again.
        with track_gemini_call("/api/summary", MODEL):
            genai_client.models.generate_content(model=MODEL, contents="a")
        with track_gemini_call("/api/summary", MODEL):
            pass
    labels = {"endpoint": "/api/summary", "model": MODEL, "status": "success"}
    assert value(registry, "gemini_api_calls_total", **labels) == 3


def test_record_gemini_usage_is_for_calls_without_an_instrumented_client(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    """The documented rule, and what breaking it costs: the call is counted twice."""
    response = genai_client.models.generate_content(model=MODEL, contents="a")
    with app.app_context():
        record_gemini_usage("<background>", MODEL, usage_metadata=response)
    assert total_calls(registry) == 2


# -- circuit breakers ----------------------------------------------------------------------


def open_breaker(fail_max: int = 1) -> pybreaker.CircuitBreaker:
    breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=60, name="gemini")
    breaker.open()
    return breaker


def test_a_call_the_open_breaker_refuses_is_no_gemini_call(
    app: Flask, registry: CollectorRegistry
) -> None:
    breaker = open_breaker()
    monitor_breaker(breaker)

    def refused() -> None:
        with track_gemini_call("/api/generate", MODEL), breaker.calling():
            raise AssertionError("an open breaker does not run the block")

    with app.app_context(), pytest.raises(pybreaker.CircuitBreakerError):
        refused()
    labels = {"endpoint": "/api/generate", "model": MODEL}
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 1
    assert total_calls(registry) == 0
    assert value(registry, "gemini_api_duration_seconds_count", **labels) == 0
    assert value(registry, "quota_requests_today") == 0  # no quota used
    assert value(registry, "circuit_breaker_rejected_calls_total", service="gemini") == 1


def test_the_call_that_trips_the_breaker_is_that_calls_failure(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    """pybreaker raises CircuitBreakerError for the call that trips it too: that call ran
    and failed, and its error type is the API's."""
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name="gemini")

    def generate() -> Any:
        return genai_client.models.generate_content(
            model=MODEL, contents="x", config=scenario("503")
        )

    with (
        app.app_context(),
        pytest.raises(pybreaker.CircuitBreakerError),
        track_gemini_call("/api/generate", MODEL),
    ):
        breaker.call(generate)
    labels = {"endpoint": "/api/generate", "model": MODEL}
    # Recorded once, by the client, as the 503 it was.
    assert value(registry, "gemini_api_errors_total", **labels, error_type="UNAVAILABLE") == 1
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 0
    assert total_calls(registry) == 1
    # Then the breaker is open: the next call is refused, no call, no quota.
    with (
        app.app_context(),
        pytest.raises(pybreaker.CircuitBreakerError),
        track_gemini_call("/api/generate", MODEL),
    ):
        breaker.call(generate)
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 1
    assert total_calls(registry) == 1
    assert value(registry, "quota_requests_today") == 1


def test_a_trip_without_a_client_is_an_error_of_the_calls_type(
    app: Flask, registry: CollectorRegistry
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name="gemini")

    def fails() -> None:
        raise TimeoutError("deadline exceeded")

    with (
        app.app_context(),
        pytest.raises(pybreaker.CircuitBreakerError),
        track_gemini_call("/api/generate", MODEL),
    ):
        breaker.call(fails)
    labels = {"endpoint": "/api/generate", "model": MODEL}
    assert value(registry, "gemini_api_errors_total", **labels, error_type="timeout") == 1
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 0


def test_a_rejection_raised_while_handling_another_error_is_still_a_rejection(
    app: Flask, registry: CollectorRegistry
) -> None:
    """A retry in an ``except`` block: the rejection has the handled error as its context,
    but is no trip."""
    breaker = open_breaker()
    with app.app_context():
        try:
            raise ValueError("first attempt failed")
        except ValueError:
            with (
                pytest.raises(pybreaker.CircuitBreakerError),
                track_gemini_call("/api/generate", MODEL),
                breaker.calling(),
            ):
                pass
    labels = {"endpoint": "/api/generate", "model": MODEL}
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 1
    assert total_calls(registry) == 0


def test_rejected_streams_and_coroutines(app: Flask, registry: CollectorRegistry) -> None:
    import asyncio

    breaker = open_breaker()

    @track_gemini_call("/api/stream", MODEL)
    def stream() -> Iterator[str]:
        with breaker.calling():
            yield "never"

    @track_gemini_call("/api/async", MODEL)
    async def answer() -> str:
        with breaker.calling():
            return "never"

    with app.app_context():
        with pytest.raises(pybreaker.CircuitBreakerError):
            list(stream())
        with pytest.raises(pybreaker.CircuitBreakerError):
            asyncio.run(answer())
    for endpoint in ("/api/stream", "/api/async"):
        assert (
            value(registry, "gemini_api_rejected_calls_total", endpoint=endpoint, model=MODEL) == 1
        )
    assert total_calls(registry) == 0


def test_record_gemini_usage_can_report_a_rejection(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        record_gemini_usage("/api/generate", MODEL, status="rejected")
    labels = {"endpoint": "/api/generate", "model": MODEL}
    assert value(registry, "gemini_api_rejected_calls_total", **labels) == 1
    assert total_calls(registry) == 0
    assert value(registry, "quota_requests_today") == 0
