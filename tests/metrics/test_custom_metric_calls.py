"""Direct calls to a declared metric follow the rules of ``record_business_event``.

Bad amounts (NaN, infinities, negative for a counter or histogram, wrong types, ints
beyond float's range), bad label values (``None``, empty, not strings) and wrong label
names or methods are refused: under ``APPMETRICS_STRICT`` with the strict-mode exception
naming the field; otherwise logged (field named) and dropped. Nothing raises into the app
and no value poisons the metric.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from flask_appmetrics import CustomMetric, FlaskMetrics
from flask_appmetrics.errors import StrictInputError
from tests.support.apps import AppFactory


class Declared:
    def __init__(self, metrics: FlaskMetrics) -> None:
        self.jobs = metrics.counter("jobs_total", "Jobs")
        self.images = metrics.counter("images_total", "Images", ["source"])
        self.level = metrics.gauge("queue_depth", "Queue depth")
        self.score = metrics.histogram("score", "Scores", ["kind"], buckets=(0.5, 1.0))
        self.latency = metrics.histogram("job_seconds", "Job duration", buckets=(1.0,))
        # Series the bad calls below use, created with valid labels beforehand.
        self.images.labels(source="ai")
        self.score.labels(kind="a")


@pytest.fixture
def declared(metrics: FlaskMetrics) -> Declared:
    return Declared(metrics)


#: (call, field named in the message, exception class in strict mode)
BAD_CALLS: list[tuple[str, Callable[[Declared], object], str, type[Exception]]] = [
    ("inc(nan)", lambda d: d.jobs.inc(math.nan), "amount", ValueError),
    ("inc(inf)", lambda d: d.jobs.inc(math.inf), "amount", ValueError),
    ("inc(-1)", lambda d: d.jobs.inc(-1), "amount", ValueError),
    ("inc('x')", lambda d: d.jobs.inc("x"), "amount", TypeError),
    ("inc(True)", lambda d: d.jobs.inc(True), "amount", TypeError),
    ("inc(10**400)", lambda d: d.jobs.inc(10**400), "amount", ValueError),
    ("inc(None)", lambda d: d.jobs.inc(None), "amount", TypeError),
    ("labels(k=None)", lambda d: d.images.labels(source=None).inc(), "labels.source", TypeError),
    ("labels(k='')", lambda d: d.images.labels(source="").inc(), "labels.source", ValueError),
    ("labels(k=3)", lambda d: d.images.labels(3).inc(), "labels.source", TypeError),
    ("labels(wrong=)", lambda d: d.images.labels(kind="a").inc(), "labels", ValueError),
    ("labels(a, b)", lambda d: d.images.labels("a", "b").inc(), "labels", ValueError),
    ("labelled inc()", lambda d: d.images.inc(), "labels", ValueError),
    ("unlabelled labels()", lambda d: d.jobs.labels().inc(), "labels", ValueError),
    ("child inc(nan)", lambda d: d.images.labels(source="ai").inc(math.nan), "amount", ValueError),
    ("gauge set(nan)", lambda d: d.level.set(math.nan), "value", ValueError),
    ("gauge set(-inf)", lambda d: d.level.set(-math.inf), "value", ValueError),
    ("gauge set('5')", lambda d: d.level.set("5"), "value", TypeError),
    ("gauge inc(10**400)", lambda d: d.level.inc(10**400), "amount", ValueError),
    ("gauge dec(nan)", lambda d: d.level.dec(math.nan), "amount", ValueError),
    ("observe(nan)", lambda d: d.latency.observe(math.nan), "value", ValueError),
    ("observe(-1)", lambda d: d.latency.observe(-1), "value", ValueError),
    ("observe([])", lambda d: d.latency.observe([]), "value", TypeError),
    ("child observe(inf)", lambda d: d.score.labels("a").observe(math.inf), "value", ValueError),
    ("counter set(5)", lambda d: d.jobs.set(5), "set", TypeError),
    ("histogram inc()", lambda d: d.latency.inc(), "inc", TypeError),
    ("counter observe()", lambda d: d.images.labels(source="ai").observe(1), "observe", TypeError),
]
IDS = [case[0] for case in BAD_CALLS]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    names = ("jobs", "images", "queue_depth", "score", "job_seconds")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name in names
        for s in family.samples
        if not s.name.endswith("_created")
    }


Case = tuple[str, Callable[[Declared], object], str, type[Exception]]


@pytest.mark.parametrize("case", BAD_CALLS, ids=IDS)
def test_bad_calls_are_logged_and_dropped(
    app: Flask,
    declared: Declared,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    case: Case,
) -> None:
    _, call, field, _ = case
    before = samples(registry)
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        call(declared)  # never raises into the app
    assert samples(registry) == before
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert f": {field}:" in messages[0], messages[0]
    generate_latest(registry)  # the page still renders


@pytest.mark.parametrize("case", BAD_CALLS, ids=IDS)
def test_bad_calls_raise_in_strict_mode(
    app_factory: AppFactory, declared: Declared, registry: CollectorRegistry, case: Case
) -> None:
    _, call, field, error = case
    app = app_factory({"APPMETRICS_STRICT": True})
    before = samples(registry)
    with app.app_context(), pytest.raises(error, match=f"^{field}:") as raised:
        call(declared)
    assert isinstance(raised.value, StrictInputError)
    assert samples(registry) == before


def test_nan_does_not_poison_the_counter(
    app: Flask, declared: Declared, registry: CollectorRegistry
) -> None:
    with app.app_context():
        declared.jobs.inc(math.nan)
        declared.jobs.inc(2)
        declared.images.labels(source="ai").inc(math.nan)
        declared.images.labels(source="ai").inc()
        declared.level.set(math.nan)
        declared.level.set(3)
        declared.level.inc(-1)  # a gauge goes down too
    assert registry.get_sample_value("jobs_total") == 2.0
    assert registry.get_sample_value("images_total", {"source": "ai"}) == 1.0
    assert registry.get_sample_value("queue_depth") == 2.0


def test_label_none_records_no_none_series(
    app: Flask, declared: Declared, registry: CollectorRegistry
) -> None:
    with app.app_context():
        declared.images.labels(source=None).inc()
        declared.images.labels(None).inc()
    assert registry.get_sample_value("images_total", {"source": "None"}) is None


def test_a_refused_series_offers_the_usual_methods_and_records_nothing(
    app: Flask, declared: Declared, registry: CollectorRegistry
) -> None:
    with app.app_context():
        series = declared.score.labels(kind=None)
        with series.time():
            pass

        @series.time()
        def work() -> int:
            return 7

        assert work() == 7
    assert registry.get_sample_value("score_count", {"kind": "None"}) is None


def test_valid_calls_keep_the_prometheus_client_api(
    app: Flask, declared: Declared, registry: CollectorRegistry
) -> None:
    with app.app_context():
        declared.jobs.inc()
        declared.jobs.inc(2.5)
        declared.images.labels("ai").inc()
        declared.images.labels(source="ai").inc(0)
        declared.level.set(10)
        declared.level.dec(4)
        declared.score.labels(kind="a").observe(0.7)
        with declared.score.labels(kind="b").time():
            pass
    assert registry.get_sample_value("jobs_total") == 3.5
    assert registry.get_sample_value("images_total", {"source": "ai"}) == 1.0
    assert registry.get_sample_value("queue_depth") == 6.0
    assert registry.get_sample_value("score_bucket", {"kind": "a", "le": "1.0"}) == 1.0
    assert registry.get_sample_value("score_count", {"kind": "b"}) == 1.0


def test_outside_an_app_context_the_latest_apps_strictness_applies(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    jobs: CustomMetric = metrics.counter("jobs_total", "Jobs")
    app = Flask("strict_app")
    app.config["APPMETRICS_STRICT"] = True
    metrics.init_app(app)
    with pytest.raises(ValueError, match=r"^amount:"):
        jobs.inc(-1)  # a worker thread or a CLI job, after the app was initialised
    assert registry.get_sample_value("jobs_total") == 0.0


def test_a_failure_while_recording_is_contained_and_counted(
    app: Flask,
    declared: Declared,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = declared.images.labels(source="ai")

    def broken(amount: float) -> Any:
        raise OSError("disk full")  # say, a multiprocess file that cannot grow

    monkeypatch.setattr(series.child, "inc", broken)
    with app.app_context(), caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        series.inc()
    assert "failed to record into images_total" in caplog.text
    assert (
        registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "custom_metric"}
        )
        == 1.0
    )


def test_the_prometheus_client_api_beyond_the_value_calls(
    metrics: FlaskMetrics, app: Flask, registry: CollectorRegistry
) -> None:
    """time(), count_exceptions(), track_inprogress() and set_function() work on a metric
    without labels as on prometheus_client's own; remove() and clear() on one with labels."""
    latency = metrics.histogram("job_seconds", "Job time")
    failures = metrics.counter("job_failures_total", "Job failures")
    running = metrics.gauge("jobs_running", "Jobs running")
    backlog = metrics.gauge("job_backlog", "Backlog")
    by_kind = metrics.counter("jobs_total", "Jobs", labelnames=("kind",))

    @latency.time()
    def job() -> None:
        with running.track_inprogress():
            assert registry.get_sample_value("jobs_running") == 1.0

    job()
    with pytest.raises(RuntimeError), failures.count_exceptions():
        raise RuntimeError("job failed")
    backlog.set_function(lambda: 7.0)
    by_kind.labels(kind="a").inc()
    by_kind.labels(kind="b").inc()
    by_kind.remove("a")

    assert registry.get_sample_value("job_seconds_count") == 1.0
    assert registry.get_sample_value("job_failures_total") == 1.0
    assert registry.get_sample_value("jobs_running") == 0.0
    assert registry.get_sample_value("job_backlog") == 7.0
    assert registry.get_sample_value("jobs_total", {"kind": "a"}) is None
    assert registry.get_sample_value("jobs_total", {"kind": "b"}) == 1.0
    by_kind.clear()
    assert registry.get_sample_value("jobs_total", {"kind": "b"}) is None


def test_series_methods_on_a_labelled_metric_are_refused_not_raised(
    metrics: FlaskMetrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    latency = metrics.histogram("call_seconds", "Calls", labelnames=("kind",))

    @latency.time()  # no .labels(...): refused and logged, the function runs untouched
    def call() -> int:
        return 3

    assert call() == 3
    assert "call .labels(...) first" in caplog.text
    assert registry.get_sample_value("call_seconds_count", {"kind": "x"}) is None
