"""The custom-metric API: declared once per registry, adopt-or-error, bounded labels.

The original service's business metrics are declared here exactly as the example app declares them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import CustomMetric, FlaskMetrics, MetricConflictError
from tests.support.apps import AppFactory
from tests.support.multiprocess import write_in_a_process


def test_the_example_business_metrics(metrics: FlaskMetrics, client: FlaskClient) -> None:
    subtopics = metrics.counter("subtopics_generated_total", "Subtopics generated")
    explanations = metrics.counter("explanations_generated_total", "Explanations generated")
    images = metrics.counter(
        "images_generated_total",
        "Images generated, by source",
        ["source"],
        allowed={"source": ["ai", "stock"]},
    )
    quality = metrics.histogram(
        "content_quality_score",
        "Quality score of generated content (0-1)",
        ["content_type"],
        buckets=(0.2, 0.4, 0.6, 0.8, 1.0),
        max_values=10,
    )
    subtopics.inc()
    explanations.inc(2)
    images.labels(source="ai").inc()
    quality.labels(content_type="lesson").observe(0.9)

    body = client.get("/metrics").get_data(as_text=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("subtopics_generated_total", ())] == 1.0
    assert samples[("explanations_generated_total", ())] == 2.0
    assert samples[("images_generated_total", (("source", "ai"),))] == 1.0
    assert samples[("images_generated_total", (("source", "stock"),))] == 0.0  # created at 0
    assert samples[("content_quality_score_count", (("content_type", "lesson"),))] == 1.0
    assert (
        samples[("content_quality_score_bucket", (("content_type", "lesson"), ("le", "0.8")))]
        == 0.0
    )


def test_declaring_again_returns_the_same_metric(metrics: FlaskMetrics) -> None:
    first = metrics.counter("jobs_total", "Jobs", ["kind"])
    again = metrics.counter("jobs_total", "Jobs", ["kind"])
    assert again is first
    assert isinstance(first, CustomMetric)


def test_each_registry_gets_its_own_metric(registry: CollectorRegistry) -> None:
    ours = FlaskMetrics(registry=registry).counter("jobs_total", "Jobs")
    theirs = FlaskMetrics(registry=CollectorRegistry()).counter("jobs_total", "Jobs")
    assert ours is not theirs
    ours.inc()
    assert registry.get_sample_value("jobs_total") == 1.0
    assert theirs.metric is not ours.metric


def test_declaring_in_an_app_factory_called_per_test_is_safe(
    app_factory: AppFactory, metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    def create_app() -> Flask:
        app = app_factory()
        metrics.counter("signups_total", "Signups").inc()
        return app

    create_app()
    create_app()
    assert registry.get_sample_value("signups_total") == 2.0


def test_a_different_definition_is_a_clear_error(metrics: FlaskMetrics) -> None:
    metrics.counter("jobs_total", "Jobs", ["kind"])
    with pytest.raises(MetricConflictError, match="jobs_total"):
        metrics.counter("jobs_total", "Jobs", ["kind", "queue"])
    with pytest.raises(MetricConflictError, match="jobs_total"):
        metrics.counter("jobs_total", "Jobs", ["kind"], max_values=5)
    with pytest.raises(MetricConflictError):
        metrics.gauge("jobs_total", "Jobs", ["kind"])


def test_a_compatible_collector_of_other_code_is_adopted(
    registry: CollectorRegistry, metrics: FlaskMetrics
) -> None:
    theirs = Counter("legacy_events_total", "Legacy", ["kind"], registry=registry)
    ours = metrics.counter("legacy_events_total", "Legacy", ["kind"])
    assert ours.metric is theirs
    ours.labels(kind="a").inc()
    assert registry.get_sample_value("legacy_events_total", {"kind": "a"}) == 1.0


def test_an_incompatible_collector_of_other_code_is_a_clear_error(
    registry: CollectorRegistry, metrics: FlaskMetrics
) -> None:
    Gauge("legacy_level", "Legacy", registry=registry)
    with pytest.raises(MetricConflictError, match="legacy_level"):
        metrics.counter("legacy_level", "Legacy")


def test_allow_list_maps_everything_else_to_other(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    images = metrics.counter(
        "images_generated_total", "Images", ["source"], allowed={"source": ["ai", "stock"]}
    )
    for source in ("ai", "stock", "upload", "scraped", "ai"):
        images.labels(source).inc()
    assert registry.get_sample_value("images_generated_total", {"source": "ai"}) == 2.0
    assert registry.get_sample_value("images_generated_total", {"source": "other"}) == 2.0
    assert registry.get_sample_value("images_generated_total", {"source": "upload"}) is None


def test_cap_keeps_the_first_values_then_other(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    score = metrics.gauge("content_quality", "Quality", ["content_type"], max_values=2)
    score.labels(content_type="lesson").set(0.5)
    score.labels(content_type="quiz").set(0.7)
    score.labels(content_type="essay").set(0.9)
    score.labels(content_type="lesson").set(0.6)
    assert registry.get_sample_value("content_quality", {"content_type": "lesson"}) == 0.6
    assert registry.get_sample_value("content_quality", {"content_type": "other"}) == 0.9
    assert registry.get_sample_value("content_quality", {"content_type": "essay"}) is None


def test_wrong_labels_are_refused(metrics: FlaskMetrics, app_factory: AppFactory) -> None:
    jobs = metrics.counter("jobs_total", "Jobs", ["kind"])
    # Wrong label names at a call are bad input like any other: raised in strict mode
    # (logged and dropped otherwise, see test_custom_metric_calls.py).
    with app_factory({"APPMETRICS_STRICT": True}).app_context():
        with pytest.raises(ValueError, match=r"^labels: jobs_total takes"):
            jobs.labels(queue="x")
        with pytest.raises(ValueError, match=r"^labels: jobs_total takes 1 label values"):
            jobs.labels("a", "b")
    # A wrong declaration is the app's code, refused at once.
    with pytest.raises(ValueError, match="unknown labels"):
        metrics.counter("other_total", "Other", ["a"], allowed={"b": ["x"]})
    with pytest.raises(TypeError, match="labelnames"):
        metrics.counter("text_total", "Text", "kind")


def test_gauge_and_histogram_without_labels(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    level = metrics.gauge("queue_depth", "Queue depth")
    level.set(5)
    level.dec(2)
    level.inc()
    latency = metrics.histogram("job_seconds", "Job duration", buckets=(1.0, 2.0))
    latency.observe(1.5)
    assert registry.get_sample_value("queue_depth") == 4.0
    assert registry.get_sample_value("job_seconds_bucket", {"le": "1.0"}) == 0.0
    assert registry.get_sample_value("job_seconds_bucket", {"le": "2.0"}) == 1.0


_MODES_WORKER = """
from prometheus_client import CollectorRegistry
from flask_appmetrics import FlaskMetrics
metrics = FlaskMetrics(registry=CollectorRegistry())
metrics.gauge("jobs_queued", "Jobs waiting", multiprocess_mode="livemax").set(3)
metrics.gauge("jobs_running", "Jobs running").set(1)
"""


def test_gauge_multiprocess_mode_is_passed_to_prometheus_client(tmp_path: Path) -> None:
    # prometheus_client names each worker's gauge file after the gauge's mode.
    pid = write_in_a_process(tmp_path, _MODES_WORKER)
    assert (tmp_path / f"gauge_livemax_{pid}.db").exists()
    assert (tmp_path / f"gauge_livesum_{pid}.db").exists()  # the default
    metrics = FlaskMetrics(registry=CollectorRegistry())
    with pytest.raises(ValueError, match="Invalid multiprocess mode"):
        metrics.gauge("jobs_broken", "x", multiprocess_mode="average")
