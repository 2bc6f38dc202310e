"""LLM spend and learned quota limits shared through a real redis-server by every worker."""

from __future__ import annotations

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, record_gemini_usage
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

MODEL = "gemini-2.5-flash"


def worker(url: str, registry: CollectorRegistry) -> Flask:
    app = Flask("llm_worker")
    app.config.update(
        APPMETRICS_REDIS_URL=url,
        APPMETRICS_REDIS_PREFIX="llm",
        APPMETRICS_GEMINI_DAILY_BUDGET_USD=1.0,
    )
    FlaskMetrics(registry=registry).init_app(app)
    return app


def test_spend_and_learned_limits_are_every_workers(redis_server: RedisServer) -> None:
    registry_a, registry_b = CollectorRegistry(), CollectorRegistry()
    a, b = worker(redis_server.url, registry_a), worker(redis_server.url, registry_b)
    with a.app_context():
        # 0.30 USD per million input tokens: 0.3 USD.
        record_gemini_usage("/api/x", MODEL, input_tokens=1_000_000)
        for _ in range(4):
            record_gemini_usage("/api/x", MODEL, input_tokens=10)
    with b.app_context():
        record_gemini_usage("/api/x", MODEL, input_tokens=1_000_000)
        record_gemini_usage("/api/x", MODEL, input_tokens=10)
        # A refusal without details: what every worker sent this minute is the observation.
        record_gemini_usage("/api/x", MODEL, status="error", error_type="RESOURCE_EXHAUSTED")
        record_gemini_usage(
            "/api/x",
            "gemini-2.5-pro",
            status="error",
            error_type="RESOURCE_EXHAUSTED",
        )
    for registry in (registry_a, registry_b):
        assert registry.get_sample_value("gemini_api_spend_today_usd") == pytest.approx(
            0.6 + 5 * 10 * 0.30 / 1e6
        )
        assert registry.get_sample_value("gemini_api_budget_remaining_usd") == pytest.approx(
            0.4 - 5 * 10 * 0.30 / 1e6
        )
        observed = {"model": MODEL, "source": "observed"}
        assert registry.get_sample_value("quota_learned_limit", {**observed, "limit": "rpm"}) == 7
        assert (
            registry.get_sample_value("quota_learned_limit", {**observed, "limit": "tpm"})
            == 2_000_050
        )
    # A reported limit reaches the other worker too.
    from flask_appmetrics import signals

    signals.gemini_call.send(
        a,
        endpoint="/api/x",
        model=MODEL,
        status="error",
        error_type="RESOURCE_EXHAUSTED",
        refused_limit="rpd",
        refused_value=250,
    )
    reported = {"model": MODEL, "limit": "rpd", "source": "reported"}
    assert registry_b.get_sample_value("quota_learned_limit", reported) == 250
    # Nothing grows: every key expires.
    client = redis_server.client()
    keys = list(client.scan_iter("llm:*"))
    assert any(":spend:" in key for key in keys)
    assert any(":quota:learned" in key for key in keys)
    for key in keys:
        assert 0 < client.ttl(key) <= 7 * 86_400, key


def test_a_redis_that_goes_away_leaves_each_worker_its_own_spend(
    redis_server: RedisServer,
) -> None:
    registry = CollectorRegistry()
    app = worker(redis_server.url, registry)
    with app.app_context():
        record_gemini_usage("/api/x", MODEL, input_tokens=1_000_000)
    redis_server.kill()
    with app.app_context():
        record_gemini_usage("/api/x", MODEL, input_tokens=1_000_000)  # never raises
    # This process's own spend, kept all along.
    assert registry.get_sample_value("gemini_api_spend_today_usd") == pytest.approx(0.6)
