"""``promtool check metrics`` on a page where every domain family has samples."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import (
    FlaskMetrics,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
    record_quota_usage,
)
from tests.support.apps import AppFactory
from tests.support.promtool import lint, needs_promtool

pytestmark = needs_promtool


def test_domain_families_lint_clean(app_factory: AppFactory, metrics: FlaskMetrics) -> None:
    app: Flask = app_factory({"APPMETRICS_QUOTA_RPM": 10, "APPMETRICS_QUOTA_TPD": 1000})
    metrics.register_cache_layer("memory", size_bytes=lambda: 10, items=lambda: 2)
    metrics.counter("subtopics_generated_total", "Subtopics generated").inc()
    metrics.histogram("content_quality_score", "Quality", ["content_type"]).labels("x").observe(1)
    with app.app_context():
        record_cache_event(hit=True, layer="memory")
        record_gemini_usage(
            "/api/generate", "gemini-1.5-flash", duration=1.0, input_tokens=60, output_tokens=40
        )
        record_circuit_breaker_event("gemini", "state_change", "open")
        record_circuit_breaker_event("gemini", "rejected")
        record_quota_usage(requests=20, tokens=2000)
    client: FlaskClient = app.test_client()
    body = client.get("/metrics").data
    sampled = {
        family.name for family in text_string_to_metric_families(body.decode()) if family.samples
    }
    assert {
        "gemini_api_token_usage",
        "gemini_api_cost_usd",
        "quota_limit",
        "quota_exceeded",
        "circuit_breaker_transitions",
        "circuit_breaker_rejected_calls",
        "cache_layer_operations",
    } <= sampled
    problems = lint(body)
    # Only the original service's cache_items_count, as for the core catalog.
    assert problems, "promtool should flag cache_items_count"
    assert all(line.startswith("cache_items_count") for line in problems), problems
