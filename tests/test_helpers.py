"""Module-level helpers: which app they record into, bad input, strict mode, tracking."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import warnings
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

import flask_appmetrics.app_state as state_module
import flask_appmetrics.helpers as helpers_module
from flask_appmetrics import (
    FlaskMetrics,
    record_business_event,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
    record_quota_usage,
    track_gemini_call,
)
from tests.support.apps import AppFactory

GEN = {"endpoint": "/api/generate", "model": "gemini-1.5-flash"}


def calls(registry: CollectorRegistry, status: str = "success", **labels: str) -> float | None:
    return registry.get_sample_value("gemini_api_calls_total", {**GEN, **labels, "status": status})


def hits(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(
        "cache_operations_total", {"operation": "get", "result": "hit"}
    )


@pytest.fixture
def no_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """No app initialised (as in a fresh process), and the warning not given yet."""
    monkeypatch.setattr(state_module, "_latest", None)
    monkeypatch.setattr(helpers_module, "_warned", False)


def test_in_an_app_context_the_current_app_records() -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first, second = Flask("first"), Flask("second")
    FlaskMetrics(first, registry=first_registry)
    FlaskMetrics(second, registry=second_registry)  # the most recent one
    with first.app_context():
        record_cache_event(hit=True)
    assert hits(first_registry) == 1.0
    assert hits(second_registry) == 0.0


def test_outside_an_app_context_the_latest_app_records() -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    FlaskMetrics(Flask("first"), registry=first_registry)
    second = Flask("second")
    FlaskMetrics(second, registry=second_registry)

    worker = threading.Thread(target=record_cache_event, kwargs={"hit": True})
    worker.start()
    worker.join()

    assert hits(first_registry) == 0.0
    assert hits(second_registry) == 1.0


@pytest.mark.usefixtures("no_app")
def test_without_any_app_helpers_do_nothing_and_warn_once() -> None:
    with pytest.warns(RuntimeWarning, match="not initialised on any app"):
        record_cache_event(hit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens=3)
        record_quota_usage()
        record_circuit_breaker_event("db", "success")


@pytest.mark.usefixtures("no_app")
def test_an_app_context_without_the_extension_warns(registry: CollectorRegistry) -> None:
    FlaskMetrics(Flask("instrumented"), registry=registry)
    with Flask("bare").app_context(), pytest.warns(RuntimeWarning, match="'bare'"):
        record_cache_event(hit=True)
    assert hits(registry) == 0.0


def test_record_gemini_usage_called_positionally(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage(
            endpoint="/api/generate",
            model="gemini-1.5-flash",
            tokens=120,
            duration=1.5,
            status="success",
        )
    assert calls(registry) == 1.0
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 120.0
    assert registry.get_sample_value("gemini_api_duration_seconds_sum", GEN) == 1.5
    assert registry.get_sample_value("quota_tokens_today") == 120.0


BAD_GEMINI: list[tuple[dict[str, Any], str]] = [
    ({"tokens": -1}, "tokens"),
    ({"tokens": "12"}, "tokens"),
    ({"tokens": True}, "tokens"),
    ({"tokens": 1.5}, "tokens"),
    ({"duration": math.nan}, "duration"),
    ({"duration": math.inf}, "duration"),
    ({"duration": -0.1}, "duration"),
    ({"duration": "1s"}, "duration"),
    ({"status": "ok"}, "status"),
    ({"endpoint": None}, "endpoint"),
    ({"endpoint": 42}, "endpoint"),
    ({"model": ""}, "model"),
    ({"input_tokens": -5}, "input_tokens"),
    ({"input_tokens": 5, "cached_tokens": 6}, "cached_tokens"),
    ({"usage_metadata": object()}, "usage_metadata"),
    ({"usage_metadata": {"prompt_token_count": -1}}, "usage_metadata.prompt_token_count"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_GEMINI)
def test_bad_gemini_input_is_logged_and_records_nothing(
    app: Flask,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    bad: dict[str, Any],
    field: str,
) -> None:
    arguments: dict[str, Any] = {**GEN, "tokens": 10, "duration": 0.5, **bad}
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        record_gemini_usage(**arguments)
    assert f"{field}:" in caplog.text
    for status in ("success", "error"):
        assert not calls(registry, status)  # nothing recorded (no series either)
    assert not registry.get_sample_value("gemini_api_tokens_total", GEN)
    assert not registry.get_sample_value("gemini_api_duration_seconds_count", GEN)
    assert registry.get_sample_value("quota_requests_today") == 0.0


@pytest.mark.parametrize(("bad", "field"), BAD_GEMINI)
def test_strict_mode_raises_and_records_nothing(
    app_factory: AppFactory, registry: CollectorRegistry, bad: dict[str, Any], field: str
) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    arguments: dict[str, Any] = {**GEN, "tokens": 10, "duration": 0.5, **bad}
    with app.app_context(), pytest.raises((TypeError, ValueError), match=f"^{field}:"):
        record_gemini_usage(**arguments)
    assert not calls(registry)
    assert registry.get_sample_value("quota_requests_today") == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hit": "yes"}, "hit"),
        ({"hit": 1}, "hit"),
        ({"operation": 3}, "operation"),
        ({"operation": ""}, "operation"),
        ({"layer": 7}, "layer"),
    ],
)
def test_bad_cache_input(
    app: Flask,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        record_cache_event(**kwargs)
    assert f"{field}:" in caplog.text
    assert hits(registry) == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("db", "exploded"), "event"),
        (("db", "state_change", "ajar"), "state"),
        (("db", "state_change"), "state"),
        (("db", "success", "open"), "state"),
        ((None, "success"), "service"),
    ],
)
def test_bad_breaker_input(
    app_factory: AppFactory, registry: CollectorRegistry, args: tuple[Any, ...], field: str
) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    with app.app_context(), pytest.raises((TypeError, ValueError), match=f"^{field}:"):
        record_circuit_breaker_event(*args)
    assert registry.get_sample_value("circuit_breaker_successes_total", {"service": "db"}) is None


def test_bad_quota_input(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    with app.app_context():
        with pytest.raises(ValueError, match=r"^requests:"):
            record_quota_usage(requests=-1)
        with pytest.raises(TypeError, match=r"^tokens:"):
            record_quota_usage(tokens=2.5)  # type: ignore[arg-type]
    assert registry.get_sample_value("quota_requests_today") == 0.0


def test_record_quota_usage(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_quota_usage(requests=2, tokens=500)
    assert registry.get_sample_value("quota_requests_current_minute") == 2.0
    assert registry.get_sample_value("quota_tokens_today") == 500.0


def test_record_circuit_breaker_event(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_circuit_breaker_event("payments", "state", "closed")
        record_circuit_breaker_event("payments", "failure")
        record_circuit_breaker_event("payments", "state_change", "open")
        record_circuit_breaker_event("payments", "rejected")
        record_circuit_breaker_event("payments", "state_change", "half-open")
    service = {"service": "payments"}
    assert registry.get_sample_value("circuit_breaker_state", service) == 1.0
    assert registry.get_sample_value("circuit_breaker_failures_total", service) == 1.0
    assert registry.get_sample_value("circuit_breaker_successes_total", service) == 0.0
    assert registry.get_sample_value("circuit_breaker_rejected_calls_total", service) == 1.0
    for state, count in (("open", 1.0), ("half_open", 1.0), ("closed", 0.0)):
        assert (
            registry.get_sample_value(
                "circuit_breaker_transitions_total", {**service, "state": state}
            )
            == count
        )


def test_track_gemini_call_times_and_records_success(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        with track_gemini_call(**GEN) as call:
            call.usage(input_tokens=30, output_tokens=12)
        with pytest.raises(TimeoutError), track_gemini_call(**GEN):
            raise TimeoutError("upstream")
    assert calls(registry) == 1.0
    assert calls(registry, "error") == 1.0
    assert registry.get_sample_value("gemini_api_duration_seconds_count", GEN) == 2.0
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 42.0


def test_track_gemini_call_in_strict_mode_keeps_the_blocks_own_exception(
    app_factory: AppFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    upstream = TimeoutError("upstream")
    with app.app_context(), caplog.at_level(logging.ERROR, logger="flask_appmetrics"):

        def failing_call() -> None:
            with track_gemini_call(**GEN) as call:
                call.usage(tokens=-1)  # a bad payload, and then the call itself fails
                raise upstream

        with pytest.raises(TimeoutError) as raised:
            failing_call()
        assert raised.value is upstream

        async def failing_async_call() -> None:
            async with track_gemini_call(**GEN) as call:
                call.usage(tokens=-1)
                raise upstream

        with pytest.raises(TimeoutError) as raised_async:
            asyncio.run(failing_async_call())
        assert raised_async.value is upstream
        # Without an exception of the block, strict mode refuses the payload as before.
        with pytest.raises(ValueError, match=r"^tokens:"), track_gemini_call(**GEN) as call:
            call.usage(tokens=-1)
    refusals = [r for r in caplog.records if "refused the Gemini call" in r.getMessage()]
    assert len(refusals) == 2
    assert "TimeoutError" in refusals[0].getMessage()
    assert not calls(registry)
    assert not calls(registry, "error")


def test_track_gemini_call_as_a_decorator(app: Flask, registry: CollectorRegistry) -> None:
    @track_gemini_call(**GEN)
    def generate(fail: bool) -> dict[str, int]:
        if fail:
            raise RuntimeError("quota exhausted")
        return {"ok": 1}

    with app.app_context():
        assert generate(False) == {"ok": 1}
        with pytest.raises(RuntimeError):
            generate(True)
    assert calls(registry) == 1.0
    assert calls(registry, "error") == 1.0
    assert generate.__name__ == "generate"


def test_record_business_event(
    metrics: FlaskMetrics, app: Flask, registry: CollectorRegistry
) -> None:
    metrics.counter("images_generated_total", "Images", ["source"], allowed={"source": ["ai"]})
    metrics.gauge("content_quality_score", "Quality", ["content_type"])
    with app.app_context():
        record_business_event("images_generated_total", labels={"source": "ai"})
        record_business_event("images_generated_total", 2, labels={"source": "scraped"})
        record_business_event("content_quality_score", 0.75, labels={"content_type": "lesson"})
        record_business_event("not_declared_total")  # logged, ignored
    assert registry.get_sample_value("images_generated_total", {"source": "ai"}) == 1.0
    assert registry.get_sample_value("images_generated_total", {"source": "other"}) == 2.0
    assert registry.get_sample_value("content_quality_score", {"content_type": "lesson"}) == 0.75


def test_bad_business_events(
    metrics: FlaskMetrics, app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    metrics.counter("jobs_total", "Jobs")
    metrics.histogram("job_seconds", "Job duration", ["kind"])
    app = app_factory({"APPMETRICS_STRICT": True})
    with app.app_context():
        with pytest.raises(ValueError, match=r"^value:"):
            record_business_event("jobs_total", -1)
        with pytest.raises(ValueError, match=r"^value:"):
            record_business_event("job_seconds", -0.5, labels={"kind": "a"})
        with pytest.raises(ValueError, match=r"^labels:"):
            record_business_event("job_seconds", 1.0)
        with pytest.raises(ValueError, match=r"^metric:"):
            record_business_event("undeclared_total")
    assert registry.get_sample_value("jobs_total") == 0.0
    assert registry.get_sample_value("job_seconds_count", {"kind": "a"}) is None


def test_helpers_are_exact_under_concurrency(app: Flask, registry: CollectorRegistry) -> None:
    threads, per_thread = 8, 2_000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        with app.app_context():
            for index in range(per_thread):
                record_cache_event(hit=index % 2 == 0)
                record_gemini_usage(**GEN, tokens=3)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    total = threads * per_thread
    assert hits(registry) == total / 2
    assert calls(registry) == total
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 3 * total
    assert registry.get_sample_value("quota_requests_today") == total
