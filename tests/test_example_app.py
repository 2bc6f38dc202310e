"""The example backend (example_app): the original service's service rebuilt on flask-appmetrics.

Real Flask apps, real Flask-Caching, pybreaker and google-genai; the only stand-in is the
local server playing Google's Gemini API (:mod:`example_app.fake_gemini`), which the real
client calls over HTTP, instrumented with ``instrument_client``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from example_app import create_app, traffic
from example_app.llm import (
    GEMINI_MODEL,
    GeminiGenerator,
    GenerationError,
    Simulation,
    offline_generator,
)
from example_app.settings import ExampleConfigError
from flask_appmetrics import FlaskMetrics

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh() -> tuple[FlaskMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return FlaskMetrics(registry=registry), registry


@pytest.fixture
def example(fresh: tuple[FlaskMetrics, CollectorRegistry]) -> Flask:
    return create_app({"TESTING": True}, extension=fresh[0])


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


# -- the factory -------------------------------------------------------------------------


def test_factory_twice_on_the_default_registry_instruments_both_apps() -> None:
    labels = {"method": "POST", "endpoint": "/api/subtopics", "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    subtopics_before = REGISTRY.get_sample_value("subtopics_generated_total") or 0.0
    first, second = create_app({"TESTING": True}), create_app({"TESTING": True})
    assert first is not second
    generated = 0
    for app in (first, second):
        response = app.test_client().post("/api/subtopics", json={"topic": "twice"})
        assert response.status_code == 200
        generated += len(response.get_json()["subtopics"])
    assert generated == 16  # each app has its own cache: both lists were generated
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 2
    # The business metrics were declared once in that registry and are shared: both apps'
    # subtopics are counted in the one counter.
    assert REGISTRY.get_sample_value("subtopics_generated_total") == subtopics_before + 16


def test_startup_log_lines(
    caplog: pytest.LogCaptureFixture, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    with caplog.at_level(logging.INFO):
        create_app({"TESTING": True}, extension=fresh[0])
    messages = [record.getMessage() for record in caplog.records]
    expected = [
        "All required environment variables validated",
        "Prometheus metrics initialized successfully",
        "Metrics available at /metrics endpoint",
    ]
    positions = [messages.index(line) for line in expected]
    assert positions == sorted(positions)  # in the original service's order
    assert any(m.startswith("LLM: offline Gemini API stand-in") for m in messages)


def test_metrics_page_has_the_original_services_expected_samples(example: Flask) -> None:
    client = example.test_client()
    client.get("/metrics")
    text = client.get("/metrics").get_data(as_text=True)
    found = samples(text)
    key = frozenset({"endpoint": "/metrics", "method": "GET", "status": "200"}.items())
    assert found[("http_requests_total", key)] == 1.0
    gemini = frozenset(
        {"endpoint": "/api/generate", "model": GEMINI_MODEL, "status": "success"}.items()
    )
    assert found[("gemini_api_calls_total", gemini)] == 0.0
    assert (
        found[("cache_operations_total", frozenset({"operation": "get", "result": "hit"}.items()))]
        == 0.0
    )
    docs = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    assert docs["http_requests"] == "Total HTTP requests"
    assert docs["gemini_api_calls"] == "Total Gemini API calls"
    assert docs["cache_operations"] == "Total cache operations"
    # Every API endpoint's Gemini series exists before any call.
    for endpoint in ("/api/subtopics", "/api/explanations", "/api/images"):
        labels = frozenset({"endpoint": endpoint, "model": GEMINI_MODEL, "status": "error"}.items())
        assert found[("gemini_api_calls_total", labels)] == 0.0


def test_health_has_the_original_services_keys(example: Flask) -> None:
    body = example.test_client().get("/api/health").get_json()
    assert body["status"] == "healthy"
    assert body["recent_errors_5min"] == 0
    assert body["concurrent_users"] == 0
    assert body["checks"]["cache"]["status"] == "pass"


# -- what the endpoints record -------------------------------------------------------------


def test_generate_records_business_gemini_and_cache(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    registry = fresh[1]
    client = example.test_client()
    first = client.post("/api/generate", json={"topic": "black holes"})
    assert first.status_code == 200
    body = first.get_json()
    assert len(body["subtopics"]) == 8
    assert body["cached"] is False
    second = client.post("/api/generate", json={"topic": "black holes"})
    assert second.get_json() == {**body, "cached": True}

    gemini = {"endpoint": "/api/generate", "model": GEMINI_MODEL}
    assert value(registry, "gemini_api_calls_total", **gemini, status="success") == 2
    assert value(registry, "gemini_api_duration_seconds_count", **gemini) == 2
    tokens = value(registry, "gemini_api_tokens_total", **gemini)
    by_type = sum(
        value(registry, "gemini_api_token_usage_total", **gemini, token_type=t)
        for t in ("input", "output")
    )
    assert tokens > 0
    assert tokens == by_type
    # gemini-2.5-flash's list price: USD 0.30 (input) and 2.50 (output) per million tokens.
    input_tokens = value(registry, "gemini_api_token_usage_total", **gemini, token_type="input")
    output_tokens = tokens - input_tokens
    assert input_tokens > 0
    assert output_tokens > 0
    expected_cost = (input_tokens * 0.30 + output_tokens * 2.50) / 1_000_000
    assert value(registry, "gemini_api_cost_usd_total", **gemini) == pytest.approx(expected_cost)
    assert value(registry, "quota_requests_current_minute") == 2
    assert value(registry, "quota_tokens_today") == tokens
    assert value(registry, "quota_rpm_remaining") == 58
    assert value(registry, "quota_limit", limit="rpm") == 60
    # Two misses on the first request (subtopics, explanation), two hits on the second.
    assert value(registry, "cache_operations_total", operation="get", result="miss") == 2
    assert value(registry, "cache_operations_total", operation="get", result="hit") == 2
    assert value(registry, "cache_hit_rate") == 0.5
    assert value(registry, "cache_items_count", layer="memory") >= 2
    assert value(registry, "subtopics_generated_total") == 8
    assert value(registry, "explanations_generated_total") == 1
    assert value(registry, "content_quality_score_count", content_type="subtopics") == 1
    assert 0 < value(registry, "content_quality_score_sum", content_type="subtopics") <= 1
    assert value(registry, "circuit_breaker_successes_total", service="gemini") == 2
    assert value(registry, "circuit_breaker_state", service="gemini") == 0


def test_explanations_and_images(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    registry = fresh[1]
    client = example.test_client()
    explained = client.post("/api/explanations", json={"topic": "jazz", "subtopic": "bebop"})
    assert explained.status_code == 200
    assert "bebop" in explained.get_json()["explanation"]
    image = client.post("/api/images", json={"topic": "jazz"}).get_json()
    assert image["source"] == "generated"
    assert image["svg"].startswith("<svg")
    placeholder = client.post("/api/images?fail=1", json={"topic": "jazz"}).get_json()
    assert placeholder["source"] == "placeholder"
    assert value(registry, "explanations_generated_total") == 1
    assert value(registry, "images_generated_total", source="generated") == 1
    assert value(registry, "images_generated_total", source="placeholder") == 1
    assert value(registry, "content_quality_score_count", content_type="image") == 1
    images = {"endpoint": "/api/images", "model": GEMINI_MODEL}
    assert value(registry, "gemini_api_calls_total", **images, status="error") == 1


def test_a_streamed_explanation(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    registry = fresh[1]
    response = example.test_client().post(
        "/api/explanations/stream", json={"topic": "jazz", "subtopic": "bebop"}
    )
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "bebop" in response.get_data(as_text=True)
    response.close()
    stream = {"endpoint": "/api/explanations/stream", "model": GEMINI_MODEL}
    assert value(registry, "gemini_api_calls_total", **stream, status="success") == 1
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **stream) == 1
    assert value(registry, "gemini_api_output_tokens_per_second_count", **stream) == 1
    assert value(registry, "explanations_generated_total") == 1
    assert value(registry, "circuit_breaker_successes_total", service="gemini") == 1


def test_googles_quota_refusal_is_a_429_with_its_retry_delay(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    registry = fresh[1]
    response = example.test_client().post("/api/subtopics?scenario=429", json={"topic": "q"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "21"  # the API's RetryInfo
    labels = {"endpoint": "/api/subtopics", "model": GEMINI_MODEL}
    assert (
        value(registry, "gemini_api_errors_total", **labels, error_type="RESOURCE_EXHAUSTED") == 1
    )
    assert value(registry, "quota_refused_total", model=GEMINI_MODEL, limit="rpm") == 1


def test_a_blocked_answer_is_a_422_and_no_breaker_failure(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    registry = fresh[1]
    client = example.test_client()
    for path in ("/api/subtopics?scenario=safety", "/api/explanations/stream?scenario=safety"):
        assert client.post(path, json={"topic": "blocked"}).status_code == 422
    reasons = {"model": GEMINI_MODEL, "finish_reason": "SAFETY"}
    assert value(registry, "gemini_api_finish_reasons_total", **reasons) == 2
    # The API answered: two successful calls, and the breaker counts no failure.
    assert (
        value(
            registry,
            "gemini_api_calls_total",
            endpoint="/api/subtopics",
            model=GEMINI_MODEL,
            status="success",
        )
        == 1
    )
    assert value(registry, "circuit_breaker_failures_total", service="gemini") == 0


def test_bad_input_is_a_400_and_records_nothing(
    example: Flask, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    client = example.test_client()
    for body in ({}, {"topic": ""}, {"topic": 3}, {"topic": "x" * 201}):
        assert client.post("/api/generate", json=body).status_code == 400
    assert client.post("/api/explanations", json={"topic": "a", "subtopic": ""}).status_code == 400
    assert client.post("/api/subtopics", data="not json").status_code == 400
    registry = fresh[1]
    calls = {"endpoint": "/api/generate", "model": GEMINI_MODEL, "status": "success"}
    assert value(registry, "gemini_api_calls_total", **calls) == 0
    labels = {"method": "POST", "endpoint": "/api/generate", "status": "400"}
    assert value(registry, "http_requests_total", **labels) == 4


def test_failures_open_the_breaker_and_degrade_health(
    fresh: tuple[FlaskMetrics, CollectorRegistry],
) -> None:
    ext, registry = fresh
    config = {"TESTING": True, "EXAMPLE_BREAKER_FAIL_MAX": 3, "APPMETRICS_HEALTH_MIN_REQUESTS": 6}
    app = create_app(config, extension=ext)
    client = app.test_client()
    statuses = [
        client.post("/api/subtopics?fail=1", json={"topic": "t"}).status_code for _ in range(5)
    ]
    # Two failures pass through (502); the third trips the breaker (pybreaker raises
    # CircuitBreakerError for it, so 503); then calls are refused without trying.
    assert statuses == [502, 502, 503, 503, 503]
    refused = client.post("/api/subtopics", json={"topic": "other"})
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert value(registry, "circuit_breaker_state", service="gemini") == 2
    assert value(registry, "circuit_breaker_failures_total", service="gemini") == 3
    assert value(registry, "circuit_breaker_rejected_calls_total", service="gemini") == 3
    assert value(registry, "circuit_breaker_successes_total", service="gemini") == 0
    assert value(registry, "circuit_breaker_transitions_total", service="gemini", state="open") == 1
    subtopics = {"endpoint": "/api/subtopics", "model": GEMINI_MODEL}
    assert value(registry, "gemini_api_calls_total", **subtopics, status="error") == 3
    health = client.get("/api/health").get_json()
    assert health["circuit_breakers"] == {"gemini": "open"}
    assert health["status"] == "unhealthy"  # 6 of 6 requests failed
    assert (
        value(
            registry, "http_requests_total", method="POST", endpoint="/api/subtopics", status="503"
        )
        == 4
    )


class RendezvousGenerator:
    """An LLM whose calls return only once two of them are in flight at the same time."""

    model = GEMINI_MODEL

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.llm = offline_generator()

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Any:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError as exc:
            raise GenerationError("calls were serialised") from exc
        return self.llm.generate(prompt)


def test_llm_calls_run_concurrently_through_the_breaker(
    fresh: tuple[FlaskMetrics, CollectorRegistry],
) -> None:
    """pybreaker's call() holds a lock for the whole call; the service must not use it,
    or one slow LLM call would hold up every other request of the worker."""
    app = create_app({"TESTING": True}, extension=fresh[0])
    app.extensions["example_app"].generator = RendezvousGenerator()
    codes: list[int] = []

    def post(topic: str) -> None:
        codes.append(app.test_client().post("/api/subtopics", json={"topic": topic}).status_code)

    threads = [threading.Thread(target=post, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [200, 200]


def test_simulated_delay_is_measured(fresh: tuple[FlaskMetrics, CollectorRegistry]) -> None:
    ext, registry = fresh
    app = create_app({"TESTING": True}, extension=ext)
    response = app.test_client().post("/api/subtopics?delay=0.2", json={"topic": "slow"})
    assert response.status_code == 200
    labels = {"endpoint": "/api/subtopics", "model": GEMINI_MODEL}
    # The call slept 0.2 s inside the timed block: the histogram saw at least that.
    assert value(registry, "gemini_api_duration_seconds_sum", **labels) >= 0.2
    assert value(registry, "gemini_api_duration_seconds_bucket", **labels, le="0.1") == 0


def test_simulation_can_be_turned_off(fresh: tuple[FlaskMetrics, CollectorRegistry]) -> None:
    app = create_app({"TESTING": True, "EXAMPLE_SIMULATION": False}, extension=fresh[0])
    response = app.test_client().post("/api/subtopics?fail=1", json={"topic": "t"})
    assert response.status_code == 200


def test_quota_refuses_calls_over_the_limit(fresh: tuple[FlaskMetrics, CollectorRegistry]) -> None:
    ext, registry = fresh
    app = create_app({"TESTING": True, "APPMETRICS_QUOTA_RPM": 2}, extension=ext)
    client = app.test_client()
    codes = [client.post("/api/subtopics", json={"topic": f"t{i}"}).status_code for i in range(4)]
    assert codes == [200, 200, 429, 429]
    assert value(registry, "quota_requests_current_minute") == 2
    assert value(registry, "quota_rpm_remaining") == 0
    # A cached answer needs no LLM call, so the quota does not refuse it.
    assert client.post("/api/subtopics", json={"topic": "t0"}).status_code == 200


def test_offline_failure_rate_is_reproducible() -> None:
    def outcomes() -> list[bool]:
        generator = offline_generator(failure_rate=0.5)
        result = []
        for _ in range(20):
            try:
                generator.generate("p")
                result.append(True)
            except GenerationError:
                result.append(False)
        return result

    first = outcomes()
    assert first == outcomes()
    assert 0 < first.count(False) < 20


def test_settings_are_validated_and_visible(fresh: tuple[FlaskMetrics, CollectorRegistry]) -> None:
    app = create_app({"TESTING": True}, extension=fresh[0])
    assert app.config["EXAMPLE_LLM"] == "auto"
    assert app.config["CACHE_TYPE"] == "SimpleCache"
    assert app.config["APPMETRICS_QUOTA_RPM"] == 60
    with pytest.raises(ExampleConfigError, match="EXAMPLE_LLM"):
        create_app({"EXAMPLE_LLM": "gpt"}, extension=FlaskMetrics(registry=CollectorRegistry()))
    with pytest.raises(ExampleConfigError, match="GEMINI_API_KEY"):
        create_app(
            {"EXAMPLE_LLM": "gemini", "GEMINI_API_KEY": None},
            extension=FlaskMetrics(registry=CollectorRegistry()),
        )
    with pytest.raises(ExampleConfigError, match="EXAMPLE_FAILURE_RATE"):
        create_app(
            {"EXAMPLE_FAILURE_RATE": 2}, extension=FlaskMetrics(registry=CollectorRegistry())
        )


# -- the real Gemini client, against a local stand-in for Google's API ----------------------


@pytest.fixture
def fake_gemini() -> Iterator[dict[str, Any]]:
    """A local server answering ``generateContent`` like Google's API (or failing)."""
    fake = Flask("fake_gemini")
    state: dict[str, Any] = {"fail": False, "requests": []}

    @fake.post("/<path:path>")
    def generate(path: str) -> Any:
        state["requests"].append((path, request.headers.get("x-goog-api-key")))
        if state["fail"]:
            return {
                "error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}
            }, 400
        return {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": "1. Alpha: one\n2. Beta: two"}],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 11,
                "candidatesTokenCount": 7,
                "thoughtsTokenCount": 3,
                "totalTokenCount": 21,
            },
        }

    server = make_server("127.0.0.1", 0, fake, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_gemini_client_records_usage_metadata(
    fake_gemini: dict[str, Any], fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    ext, registry = fresh
    app = create_app(
        {
            "TESTING": True,
            "GEMINI_API_KEY": "test-key",
            "EXAMPLE_GEMINI_BASE_URL": fake_gemini["url"],
        },
        extension=ext,
    )
    assert app.config["APPMETRICS_GEMINI_MODELS"] == ("gemini-2.5-flash",)
    response = app.test_client().post("/api/subtopics", json={"topic": "greek"})
    assert response.get_json()["subtopics"] == ["Alpha", "Beta"]
    path, key = fake_gemini["requests"][0]
    assert path.endswith("models/gemini-2.5-flash:generateContent")
    assert key == "test-key"
    labels = {"endpoint": "/api/subtopics", "model": "gemini-2.5-flash"}
    assert value(registry, "gemini_api_calls_total", **labels, status="success") == 1
    assert value(registry, "gemini_api_token_usage_total", **labels, token_type="input") == 11
    # Output includes the reasoning tokens; thoughts is that part on its own.
    assert value(registry, "gemini_api_token_usage_total", **labels, token_type="output") == 10
    assert value(registry, "gemini_api_token_usage_total", **labels, token_type="thoughts") == 3
    assert value(registry, "gemini_api_tokens_total", **labels) == 21


def test_gemini_client_errors_are_generation_errors(fake_gemini: dict[str, Any]) -> None:
    fake_gemini["fail"] = True
    client = GeminiGenerator("k", base_url=fake_gemini["url"], timeout=10)
    with pytest.raises(GenerationError, match="400"):
        client.generate("x", simulation=Simulation(fail=False))


# -- python -m example_app and the traffic generator ---------------------------------------


def test_traffic_plan_is_bounded_and_reproducible() -> None:
    plan = traffic.plan(200, seed=3)
    assert len(plan) == 200
    assert plan == traffic.plan(200, seed=3)
    paths = {call.path.split("?")[0] for call in plan}
    assert {"/api/generate", "/api/subtopics", "/api/explanations", "/api/images"} <= paths
    assert any("fail=1" in call.path for call in plan)


def test_appmetrics_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, fresh: tuple[FlaskMetrics, CollectorRegistry]
) -> None:
    monkeypatch.setenv("APPMETRICS_QUOTA_RPM", "7")
    monkeypatch.setenv("APPMETRICS_STATUS_PATH", "/ops/status")
    app = create_app({"TESTING": True, "APPMETRICS_QUOTA_TPM": 9}, extension=fresh[0])
    assert app.config["APPMETRICS_QUOTA_RPM"] == 7  # parsed as JSON: an int
    assert app.config["APPMETRICS_STATUS_PATH"] == "/ops/status"  # not JSON: the string
    assert app.config["APPMETRICS_QUOTA_TPM"] == 9  # explicit config wins
    assert fresh[1].get_sample_value("quota_limit", {"limit": "rpm"}) == 7
    monkeypatch.setenv("APPMETRICS_QUOTA_RMP", "7")
    with pytest.raises(ValueError, match="APPMETRICS_QUOTA_RMP"):
        create_app({"TESTING": True}, extension=FlaskMetrics(registry=CollectorRegistry()))


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_FAILURE_RATE", "often")
    with pytest.raises(ExampleConfigError, match="EXAMPLE_FAILURE_RATE"):
        create_app({"TESTING": True}, extension=FlaskMetrics(registry=CollectorRegistry()))
