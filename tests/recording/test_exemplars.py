"""Exemplars in process: the request's trace id on its duration bucket, on OpenMetrics pages.

Each trace source is the real thing: the W3C ``traceparent`` header as a proxy sends it,
a span of the OpenTelemetry SDK started by its Flask instrumentation, and Sentry's SDK
with tracing on. Pages are read with prometheus_client's OpenMetrics parser.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from flask import Flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Sample
from sentry_sdk.transport import Transport

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.helpers import record_gemini_usage
from flask_appmetrics.metrics.exemplars import parse_trace_id, trace_id
from flask_appmetrics.recording.trace_context import request_trace_reader
from tests.support.apps import AppFactory
from tests.support.wsgi import serve

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
ITEMS = "/items/<int:item_id>"


def traceparent(trace_id: str, *, sampled: bool = True) -> str:
    return f"00-{trace_id}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"


def buckets(app: Flask, family: str, **labels: str) -> list[Sample]:
    """The bucket samples of *family* with *labels* on the app's OpenMetrics page."""
    page = serve(app, "/metrics", headers=OPENMETRICS)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("application/openmetrics-text")
    for metric in text_string_to_metric_families(page.body.decode()):
        if metric.name == family:
            return [
                s
                for s in metric.samples
                if s.name == family + "_bucket"
                and all(s.labels.get(k) == v for k, v in labels.items())
            ]
    raise AssertionError(f"{family} not on the page")


def exemplar_traces(samples: list[Sample]) -> dict[str, str]:
    """``le`` -> trace id of each bucket that carries an exemplar, checked against its bound."""
    out: dict[str, str] = {}
    previous = -math.inf
    for s in samples:
        bound = float(s.labels["le"])
        if s.exemplar is not None:
            assert set(s.exemplar.labels) == {"trace_id"}
            # The exemplar's value lies in its bucket.
            assert previous < s.exemplar.value <= bound
            assert s.exemplar.timestamp is not None
            out[s.labels["le"]] = s.exemplar.labels["trace_id"]
        previous = bound
    return out


def test_traceparent_header_becomes_the_exemplar(app: Flask) -> None:
    trace_id = secrets.token_hex(16)
    assert serve(app, "/items/1", headers={"traceparent": traceparent(trace_id)}).status == 200

    traces = exemplar_traces(
        buckets(app, "http_request_duration_seconds", method="GET", endpoint=ITEMS)
    )
    assert list(traces.values()) == [trace_id]


def test_the_latest_request_of_a_bucket_wins_and_unsampled_or_bad_headers_give_none(
    app: Flask,
) -> None:
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    serve(app, "/items/1", headers={"traceparent": traceparent(first)})
    serve(app, "/items/1", headers={"traceparent": traceparent(second)})
    serve(
        app, "/items/1", headers={"traceparent": traceparent(secrets.token_hex(16), sampled=False)}
    )
    serve(app, "/items/1", headers={"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"})
    serve(app, "/items/1", headers={"traceparent": "garbage"})
    serve(app, "/items/1")

    traces = exemplar_traces(
        buckets(app, "http_request_duration_seconds", method="GET", endpoint=ITEMS)
    )
    # Every request fell in the fastest bucket or close: the latest traced one is shown.
    assert second in traces.values()
    assert first not in traces.values() or len(set(traces.values())) > 1


def test_a_streamed_response_gets_its_exemplar_when_it_ends(app: Flask) -> None:
    trace_id = secrets.token_hex(16)
    assert serve(app, "/stream", headers={"traceparent": traceparent(trace_id)}).body == b"ab"
    traces = exemplar_traces(buckets(app, "http_request_duration_seconds", endpoint="/stream"))
    assert list(traces.values()) == [trace_id]


def test_text_format_pages_carry_no_exemplar_and_still_parse(app: Flask) -> None:
    serve(app, "/items/1", headers={"traceparent": traceparent(secrets.token_hex(16))})
    page = serve(app, "/metrics")
    assert page.headers["Content-Type"].startswith("text/plain")
    assert "trace_id" not in page.body.decode()
    assert any(m.name == "http_request_duration_seconds" for m in text_families(page.body.decode()))


def test_exemplars_can_be_turned_off(app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_EXEMPLARS": False})
    serve(app, "/items/1", headers={"traceparent": traceparent(secrets.token_hex(16))})
    samples = buckets(app, "http_request_duration_seconds", method="GET", endpoint=ITEMS)
    assert sum(s.value for s in samples if s.labels["le"] == "+Inf") == 1
    assert exemplar_traces(samples) == {}


@pytest.fixture
def otel_app(app_factory: AppFactory) -> Iterator[tuple[Flask, list[str]]]:
    """An app traced by OpenTelemetry's SDK through its Flask instrumentation; the list
    gets the trace id of the span each request ran in."""
    app = app_factory()
    seen: list[str] = []

    @app.get("/traced")
    def traced() -> str:
        context = trace.get_current_span().get_span_context()
        seen.append(format(context.trace_id, "032x"))
        return "ok"

    provider = TracerProvider(sampler=ALWAYS_ON)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    try:
        yield app, seen
    finally:
        FlaskInstrumentor().uninstrument_app(app)
        provider.shutdown()


def test_the_active_opentelemetry_span_gives_the_trace(otel_app: tuple[Flask, list[str]]) -> None:
    app, seen = otel_app
    assert serve(app, "/traced").status == 200
    traces = exemplar_traces(buckets(app, "http_request_duration_seconds", endpoint="/traced"))
    assert list(traces.values()) == seen
    assert trace_id(seen[0]) == seen[0]


def traced_by_an_unsampling_tracer(app_factory: AppFactory, header: str) -> Flask:
    """An app whose own tracer samples nothing (opentelemetry-instrumentation-flask with an
    ``ALWAYS_OFF`` sampler), after one request to ``/traced`` with *header* as traceparent."""
    app = app_factory()

    @app.get("/traced")
    def traced() -> str:
        return "ok"

    provider = TracerProvider(sampler=ALWAYS_OFF)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    try:
        serve(app, "/traced", headers={"traceparent": header})
    finally:
        FlaskInstrumentor().uninstrument_app(app)
        provider.shutdown()
    return app


def test_an_unsampled_incoming_trace_gives_no_exemplar(app_factory: AppFactory) -> None:
    # The span continues the incoming trace, unsampled: no trace will exist to link to.
    header = traceparent(secrets.token_hex(16), sampled=False)
    app = traced_by_an_unsampling_tracer(app_factory, header)
    assert exemplar_traces(buckets(app, "http_request_duration_seconds", endpoint="/traced")) == {}


def test_a_span_the_app_does_not_sample_leaves_the_callers_sampled_trace(
    app_factory: AppFactory,
) -> None:
    # The caller sampled its trace (it exists in the tracing backend); this app's tracer
    # samples nothing: the exemplar links to the caller's trace, the next source in order.
    callers = secrets.token_hex(16)
    app = traced_by_an_unsampling_tracer(app_factory, traceparent(callers))
    traces = exemplar_traces(buckets(app, "http_request_duration_seconds", endpoint="/traced"))
    assert list(traces.values()) == [callers]


class _NoTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        return None


@pytest.fixture
def sentry_on() -> Iterator[None]:
    assert not sentry_sdk.get_client().is_active()
    sentry_sdk.init(
        dsn="https://public@sentry.example.com/1", transport=_NoTransport(), traces_sample_rate=1.0
    )
    try:
        yield
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.usefixtures("sentry_on")
def test_sentrys_trace_is_used_when_sentry_is_on(app_factory: AppFactory) -> None:
    app = app_factory()
    seen: list[str] = []

    @app.get("/sentried")
    def sentried() -> str:
        traceparent_now = sentry_sdk.get_traceparent()
        assert traceparent_now is not None
        seen.append(traceparent_now.split("-")[0])
        return "ok"

    # No header: the trace can only come from Sentry (its trace for this request).
    assert serve(app, "/sentried").status == 200
    assert serve(app, "/sentried").status == 200
    assert len(set(seen)) == 2
    traces = exemplar_traces(buckets(app, "http_request_duration_seconds", endpoint="/sentried"))
    assert list(traces.values()) == seen[-1:]


def test_gemini_durations_carry_the_callers_trace(app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_GEMINI_ENDPOINTS": ["/generate"]})
    trace_id = secrets.token_hex(16)

    @app.post("/generate")
    def generate() -> str:
        record_gemini_usage("/generate", "gemini-2.5-flash", tokens=10, duration=1.5)
        return "ok"

    serve(app, "/generate", method="POST", headers={"traceparent": traceparent(trace_id)})
    with app.app_context():  # outside a request: no trace, no exemplar
        record_gemini_usage("/generate", "gemini-2.5-flash", tokens=10, duration=7.0)
    samples = buckets(app, "gemini_api_duration_seconds", endpoint="/generate")
    assert sum(s.value for s in samples if s.labels["le"] == "+Inf") == 2
    assert exemplar_traces(samples) == {"2.0": trace_id}


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", TRACE),
        (f"00-{TRACE}-{SPAN}-03", TRACE),  # another flag beside sampled
        (f"01-{TRACE}-{SPAN}-01-future-field", TRACE),  # a later version may add fields
        (f"00-{TRACE}-{SPAN}-00", None),  # not sampled
        (f"ff-{TRACE}-{SPAN}-01", None),  # an invalid version
        (f"zz-{TRACE}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN}-zz", None),
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # W3C ids are lowercase
        (f"00-{'0' * 32}-{SPAN}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE}-{'x' * 16}-01", None),
        (f"00-{TRACE}-{SPAN}0000-01", None),  # a span id of another length
        (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
        (f"01-{TRACE}-{SPAN}-01extra", None),
        (TRACE, None),  # a bare id is no traceparent header
        (f"{TRACE}-{SPAN}-1", None),  # nor is a sentry-trace value
        ("", None),
        ("-", None),
        ("x" * 1000, None),
    ],
)
def test_traceparent_headers_are_read_as_w3c_trace_context_reads_them(
    value: str, expected: str | None
) -> None:
    assert parse_trace_id(value) == expected


def test_a_tracers_trace_id_is_taken_as_it_is() -> None:
    given = trace_id(TRACE)
    assert given is not None
    assert parse_trace_id(given) == TRACE
    assert trace_id("0" * 32) is None
    assert trace_id(TRACE.upper()) is None
    assert trace_id(TRACE[:-1]) is None


def test_an_app_of_its_own_extension_keeps_its_exemplars(registry: Any) -> None:
    app = Flask("other")

    @app.get("/x")
    def x() -> str:
        return "x"

    FlaskMetrics(app, registry=registry)
    trace_id = secrets.token_hex(16)
    serve(app, "/x", headers={"traceparent": traceparent(trace_id)})
    assert list(exemplar_traces(buckets(app, "http_request_duration_seconds")).values()) == [
        trace_id
    ]


def test_opentelemetry_installed_but_not_tracing_is_no_source(app: Flask) -> None:
    """opentelemetry-api alone (here, beside an SDK no one configured): no tracer provider
    set, the app not instrumented, so requests pay only the header's lookup."""
    assert request_trace_reader(app) is None
    FlaskInstrumentor().instrument_app(app, tracer_provider=TracerProvider())
    try:
        assert request_trace_reader(app) is not None
    finally:
        FlaskInstrumentor().uninstrument_app(app)
