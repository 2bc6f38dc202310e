"""Direct calls to a declared metric follow the rules of ``record_business_event``, and
the whole prometheus_client API works on it.

Bad amounts (NaN, infinities, negative for a counter or histogram, wrong types, ints
beyond float's range), bad label values (``None``, empty, not strings), bad exemplars and
wrong label names or methods are refused: under ``APPMETRICS_STRICT`` with the
strict-mode exception naming the field; otherwise logged (field named) and dropped.
Nothing raises into the app and no value poisons the metric.

Then each method prometheus_client offers beyond the value calls (``time()``,
``count_exceptions()``, ``track_inprogress()``, ``set_function()``,
``set_to_current_time()``, ``remove()``, ``remove_by_labels()``, ``clear()``, exemplars),
on a metric without labels and on a series, read back from the registry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import CustomMetric, FlaskMetrics
from flask_appmetrics.errors import StrictInputError
from flask_appmetrics.metrics.custom_series import HISTOGRAM_EXEMPLARS
from flask_appmetrics.recording.validation import reset_log_limits
from tests.support.apps import AppFactory
from tests.support.multiprocess import output_in_a_process


class Declared:
    def __init__(self, metrics: FlaskMetrics) -> None:
        self.jobs = metrics.counter("jobs_total", "Jobs")
        self.images = metrics.counter("images_total", "Images", ["source"])
        self.level = metrics.gauge("queue_depth", "Queue depth")
        self.score = metrics.histogram("score", "Scores", ["kind"], buckets=(0.5, 1.0))
        self.latency = metrics.histogram("job_seconds", "Job duration", buckets=(1.0,))
        self.depth = metrics.gauge("depth", "Depth by queue", ["queue"])
        self.latest = metrics.gauge("latest", "Latest value", multiprocess_mode="mostrecent")
        # Series the bad calls below use, created with valid labels beforehand.
        self.images.labels(source="ai")
        self.score.labels(kind="a")
        self.depth.labels(queue="mail")


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
    # -- beyond the value calls
    ("counter time()", lambda d: d.jobs.time(), "time", TypeError),
    ("counter series time()", lambda d: d.images.labels("ai").time(), "time", TypeError),
    (
        "histogram count_exceptions()",
        lambda d: d.latency.count_exceptions(),
        "count_exceptions",
        TypeError,
    ),
    (
        "counter track_inprogress()",
        lambda d: d.jobs.track_inprogress(),
        "track_inprogress",
        TypeError,
    ),
    ("counter set_function()", lambda d: d.jobs.set_function(float), "set_function", TypeError),
    (
        "counter set_to_current_time()",
        lambda d: d.jobs.set_to_current_time(),
        "set_to_current_time",
        TypeError,
    ),
    ("count_exceptions('x')", lambda d: d.jobs.count_exceptions("x"), "exception", TypeError),
    ("count_exceptions(())", lambda d: d.jobs.count_exceptions(()), "exception", TypeError),
    ("labelled count_exceptions()", lambda d: d.images.count_exceptions(), "labels", ValueError),
    ("labelled track_inprogress()", lambda d: d.depth.track_inprogress(), "labels", ValueError),
    ("labelled set_function()", lambda d: d.depth.set_function(float), "labels", ValueError),
    ("set_function(3)", lambda d: d.level.set_function(3), "function", TypeError),
    ("labelled time() never labelled", lambda d: _timed(d.score.time()), "labels", ValueError),
    ("timer.labels(k=None)", lambda d: _timed(d.score.time(), kind=None), "labels.kind", TypeError),
    ("series labels()", lambda d: d.images.labels("ai").labels("ai"), "labels", ValueError),
    ("mostrecent inc()", lambda d: d.latest.inc(), "inc", TypeError),
    (
        "mostrecent track_inprogress()",
        lambda d: d.latest.track_inprogress(),
        "track_inprogress",
        TypeError,
    ),
    (
        "exemplar too long",
        lambda d: d.jobs.inc(1, exemplar={"trace_id": "x" * 121}),
        "exemplar",
        ValueError,
    ),
    (
        "exemplar bad name",
        lambda d: d.jobs.inc(1, exemplar={"trace id": "x"}),
        "exemplar",
        ValueError,
    ),
    (
        "exemplar value 3",
        lambda d: d.jobs.inc(1, exemplar={"trace_id": 3}),
        "exemplar.trace_id",
        TypeError,
    ),
    ("exemplar 'x'", lambda d: d.images.labels("ai").inc(1, exemplar="x"), "exemplar", TypeError),
    ("gauge exemplar", lambda d: d.level.inc(1, exemplar={"a": "b"}), "exemplar", TypeError),
    ("remove() unlabelled", lambda d: d.jobs.remove(), "labels", ValueError),
    ("remove('a', 'b')", lambda d: d.images.remove("ai", "b"), "labels", ValueError),
    ("remove(None)", lambda d: d.images.remove(None), "labels.source", TypeError),
    (
        "remove_by_labels(wrong=)",
        lambda d: d.images.remove_by_labels({"kind": "a"}),
        "labels",
        ValueError,
    ),
    ("remove_by_labels('x')", lambda d: d.images.remove_by_labels("x"), "labels", TypeError),
]
IDS = [case[0] for case in BAD_CALLS]


def _timed(timer: Any, **labels: object) -> None:
    """Run an empty block under *timer*, choosing the series inside it if *labels*."""
    with timer:
        if labels:
            timer.labels(**labels)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    names = ("jobs", "images", "queue_depth", "score", "job_seconds", "depth", "latest")
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


# -- the prometheus_client API beyond the value calls -----------------------------------------


class Job:
    """Metrics of every kind, without labels and with, as an app declares them."""

    def __init__(self, metrics: FlaskMetrics) -> None:
        self.seconds = metrics.histogram("job_seconds", "Job time", buckets=(1.0, 60.0))
        self.seconds_by_kind = metrics.histogram(
            "job_kind_seconds", "Job time by kind", ["kind"], buckets=(1.0, 60.0)
        )
        self.failures = metrics.counter("job_failures_total", "Job failures")
        self.failures_by_kind = metrics.counter("job_kind_failures_total", "By kind", ["kind"])
        self.running = metrics.gauge("jobs_running", "Jobs running")
        self.running_by_kind = metrics.gauge("jobs_kind_running", "By kind", ["kind"])
        self.last = metrics.gauge("job_last_seconds", "Last job's time")
        self.last_by_kind = metrics.gauge("job_kind_last_seconds", "By kind", ["kind"])


@pytest.fixture
def job(metrics: FlaskMetrics) -> Job:
    return Job(metrics)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_time_observes_a_block_and_each_call_of_a_function(
    job: Job, registry: CollectorRegistry
) -> None:
    with job.seconds.time() as timer:
        pass
    assert timer.duration is not None
    assert 0.0 <= timer.duration < 60.0

    @job.seconds.time()
    def work(n: int) -> int:
        return n * 2

    assert work(21) == 42
    assert work(1) == 2
    assert work.__name__ == "work"  # wrapped like prometheus_client's decorator
    assert value(registry, "job_seconds_count") == 3.0
    assert value(registry, "job_seconds_bucket", le="60.0") == 3.0


def test_time_on_a_series_and_with_the_series_chosen_in_the_block(
    job: Job, registry: CollectorRegistry
) -> None:
    with job.seconds_by_kind.labels(kind="import").time():
        pass

    @job.seconds_by_kind.labels("export").time()
    def export() -> None:
        pass

    export()
    # prometheus_client's way for a label known only inside the block:
    with job.seconds_by_kind.time() as timer:
        timer.labels(kind="import")
    assert value(registry, "job_kind_seconds_count", kind="import") == 2.0
    assert value(registry, "job_kind_seconds_count", kind="export") == 1.0


def test_time_records_when_the_block_raises(job: Job, registry: CollectorRegistry) -> None:
    with pytest.raises(KeyError), job.seconds.time():
        raise KeyError("x")
    assert value(registry, "job_seconds_count") == 1.0


def test_time_on_a_gauge_sets_it_to_the_duration(job: Job, registry: CollectorRegistry) -> None:
    job.last.set(1000.0)
    job.last_by_kind.labels("a").set(1000.0)
    with job.last.time() as timer, job.last_by_kind.labels("a").time():
        pass
    assert value(registry, "job_last_seconds") == timer.duration
    last = value(registry, "job_kind_last_seconds", kind="a")
    assert last is not None
    assert last < 60.0


def test_count_exceptions_counts_the_chosen_types_and_lets_them_go_on(
    job: Job, registry: CollectorRegistry
) -> None:
    with pytest.raises(ValueError, match="bad"), job.failures.count_exceptions():
        raise ValueError("bad")
    with job.failures.count_exceptions():
        pass  # no exception: no count
    with pytest.raises(KeyError), job.failures.count_exceptions(ValueError):
        raise KeyError("not counted")
    with pytest.raises(KeyError), job.failures.count_exceptions((ValueError, KeyError)):
        raise KeyError("counted")

    @job.failures_by_kind.labels(kind="import").count_exceptions()
    def failing() -> None:
        raise RuntimeError("import failed")

    with pytest.raises(RuntimeError):
        failing()
    assert value(registry, "job_failures_total") == 2.0
    assert value(registry, "job_kind_failures_total", kind="import") == 1.0


def test_track_inprogress_raises_the_gauge_while_running(
    job: Job, registry: CollectorRegistry
) -> None:
    with job.running.track_inprogress(), job.running_by_kind.labels("a").track_inprogress():
        assert value(registry, "jobs_running") == 1.0
        assert value(registry, "jobs_kind_running", kind="a") == 1.0

    @job.running.track_inprogress()
    def nested() -> float | None:
        return value(registry, "jobs_running")

    assert nested() == 1.0
    with pytest.raises(OSError, match="lowered"), job.running.track_inprogress():
        raise OSError("lowered all the same")
    assert value(registry, "jobs_running") == 0.0
    assert value(registry, "jobs_kind_running", kind="a") == 0.0


def test_decorated_coroutines_are_measured_until_they_return(
    job: Job, registry: CollectorRegistry
) -> None:
    @job.seconds.time()
    @job.running.track_inprogress()
    async def fetch() -> float | None:
        await asyncio.sleep(0)
        assert value(registry, "job_seconds_count") == 0.0  # not observed yet
        return value(registry, "jobs_running")

    assert asyncio.run(fetch()) == 1.0
    assert value(registry, "jobs_running") == 0.0
    assert value(registry, "job_seconds_count") == 1.0


def test_set_function_is_read_at_each_scrape(job: Job, registry: CollectorRegistry) -> None:
    queue = [1, 2, 3]
    job.running.set_function(lambda: len(queue))
    job.running_by_kind.labels("a").set_function(lambda: 2 * len(queue))
    assert value(registry, "jobs_running") == 3.0
    assert value(registry, "jobs_kind_running", kind="a") == 6.0
    queue.append(4)
    assert value(registry, "jobs_running") == 4.0


def test_a_failing_set_function_costs_its_sample_one_scrape_not_the_page(
    job: Job, app: Flask, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    results: list[Any] = [RuntimeError("queue unreachable"), math.inf, "3", 5]

    def depth() -> float:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return cast("float", result)

    job.running.set_function(depth)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        for _ in range(3):
            reset_log_limits()  # a refusal per call site per minute reaches the log
            page = client.get("/metrics")
            assert page.status_code == 200
            assert math.isnan(_page_value(page.get_data(as_text=True), "jobs_running"))
    assert "queue unreachable" in caplog.text
    assert "value: must be finite" in caplog.text
    assert "value: expected a number, got '3'" in caplog.text
    assert value(registry, "jobs_running") == 5.0  # read again, fine again
    errors = value(registry, "flask_appmetrics_internal_errors_total", component="scrape_value")
    assert errors == 1.0


def _page_value(page: str, name: str) -> float:
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not on the page")


def test_set_to_current_time(job: Job, registry: CollectorRegistry) -> None:
    before = time.time()
    job.last.set_to_current_time()
    job.last_by_kind.labels("a").set_to_current_time()
    after = time.time()
    assert before <= (value(registry, "job_last_seconds") or 0.0) <= after
    assert before <= (value(registry, "job_kind_last_seconds", kind="a") or 0.0) <= after


def test_remove_drops_the_series_and_gives_its_place_back(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    tenants = metrics.counter("tenant_jobs_total", "Jobs by tenant", ["tenant"], max_values=2)
    tenants.labels("acme").inc()
    tenants.labels("globex").inc()
    tenants.labels("initech").inc()  # beyond max_values: "other"
    assert value(registry, "tenant_jobs_total", tenant="other") == 1.0

    tenants.remove("acme")
    tenants.remove("never-seen")  # no such series: nothing to do
    assert value(registry, "tenant_jobs_total", tenant="acme") is None
    assert value(registry, "tenant_jobs_total", tenant="globex") == 1.0
    # The place acme had is free: a new tenant gets a series of its own ...
    tenants.labels("initech").inc()
    assert value(registry, "tenant_jobs_total", tenant="initech") == 1.0
    # ... and a removed one that comes back starts a new series, visible on the page.
    tenants.remove("initech")
    tenants.labels("acme").inc(2)
    assert value(registry, "tenant_jobs_total", tenant="acme") == 2.0
    tenants.remove("other")
    assert value(registry, "tenant_jobs_total", tenant="other") is None


def test_remove_by_labels_drops_every_matching_series(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    calls = metrics.counter("calls_total", "Calls", ["tenant", "route"])
    calls.labels("acme", "/a").inc()
    calls.labels("acme", "/b").inc()
    calls.labels("globex", "/a").inc()
    calls.remove_by_labels({"tenant": "acme"})
    assert value(registry, "calls_total", tenant="acme", route="/a") is None
    assert value(registry, "calls_total", tenant="acme", route="/b") is None
    assert value(registry, "calls_total", tenant="globex", route="/a") == 1.0
    calls.labels("acme", "/a").inc()  # back, counted afresh
    assert value(registry, "calls_total", tenant="acme", route="/a") == 1.0


def test_clear_drops_every_series(metrics: FlaskMetrics, registry: CollectorRegistry) -> None:
    tenants = metrics.gauge("tenant_queue", "Queue by tenant", ["tenant"], max_values=1)
    tenants.labels("acme").set(3)
    tenants.clear()
    assert value(registry, "tenant_queue", tenant="acme") is None
    tenants.labels("globex").set(4)  # acme's place is free again
    assert value(registry, "tenant_queue", tenant="globex") == 4.0
    tenants.clear()
    metrics.gauge("plain_gauge", "No labels").clear()  # nothing to clear: no error


def test_exemplars_reach_the_openmetrics_page(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    jobs = metrics.counter("exemplar_jobs_total", "Jobs")
    seconds = metrics.histogram("exemplar_seconds", "Time", ["kind"], buckets=(1.0,))
    jobs.inc(exemplar={"trace_id": "abc123"})
    seconds.labels("a").observe(0.5, exemplar={"trace_id": "def456"})
    exemplars = {
        sample.name: sample.exemplar
        for family in openmetrics_families(openmetrics_latest(registry).decode())
        for sample in family.samples
        if sample.exemplar is not None
    }
    assert exemplars["exemplar_jobs_total"].labels == {"trace_id": "abc123"}
    if HISTOGRAM_EXEMPLARS:
        assert exemplars["exemplar_seconds_bucket"].labels == {"trace_id": "def456"}
    else:  # an older prometheus_client: the call is refused, as any other unsupported one
        assert "exemplar_seconds_bucket" not in exemplars
        assert value(registry, "exemplar_seconds_count", kind="a") == 0.0


def test_the_rest_of_the_collector_is_reached_unchecked(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    calls = metrics.counter("reached_total", "Calls", ["route"])
    calls.labels("/a").inc()
    (family,) = calls.collect()
    assert family.name == "reached"
    assert [s.labels for s in family.samples if s.name == "reached_total"] == [{"route": "/a"}]
    assert [f.name for f in calls.describe()] == ["reached"]
    calls.metric.labels("/b").inc()  # the registry's own collector, unchecked
    assert value(registry, "reached_total", route="/b") == 1.0


def test_a_counters_reset_is_prometheus_clients_own(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    jobs = metrics.counter("resettable_total", "Jobs")
    jobs.inc(3)
    if hasattr(Counter, "reset"):  # prometheus_client 0.20 and later
        jobs.reset()
        assert value(registry, "resettable_total") == 0.0
    else:
        with pytest.raises(AttributeError):
            jobs.reset()


SET_FUNCTION_IN_A_WORKER = """
import logging, sys
from prometheus_client import CollectorRegistry
from flask_appmetrics import FlaskMetrics

logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
depth = FlaskMetrics(registry=CollectorRegistry()).gauge("queue_depth", "Depth")
depth.set_function(lambda: 3.0)
depth.set(2.0)  # what a worker does instead
"""


def test_set_function_is_refused_where_no_function_is_read(tmp_path: Path) -> None:
    # Under gunicorn or uWSGI the page sums what each worker's files hold: a function of
    # one process is never read. Refused with the way out, in a real worker process.
    output = output_in_a_process(tmp_path, SET_FUNCTION_IN_A_WORKER)
    assert "set_function: has no effect in multiprocess mode" in output
    assert "call set() instead" in output
