"""Bad input, tried by hypothesis: helpers, signal payloads, config keys and headers.

The properties, for arbitrary values (wrong types, NaN, infinities, negative, huge,
unicode, empty):

* a helper or a signal never raises into its caller (outside strict mode); input it
  refuses records nothing at all and leaves a log line that names the field; input it
  accepts records only finite values; under ``APPMETRICS_STRICT`` the same input raises
  ``TypeError``/``ValueError`` naming the field, and records nothing either;
* every config key either works or fails at ``init_app`` with a ``ConfigurationError``
  naming that key (never another exception, never later);
* whatever the headers the extension reads (``Accept``, ``Accept-Encoding``,
  ``Authorization``, cookies, user agent), the app's own response is the one it gives
  without the extension, ``/metrics`` and ``/api/health`` answer (never a 500), and each
  request is counted exactly once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    record_business_event,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
    record_quota_usage,
    signals,
    track_gemini_call,
)
from flask_appmetrics.config import DEFAULTS
from flask_appmetrics.recording.validation import reset_log_limits
from tests.support.internal_errors import assert_no_internal_error
from tests.support.traffic import call, environ_for, respond

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- arbitrary values -------------------------------------------------------------------

huge_ints = st.sampled_from([10**18, 2**63, 10**30, 10**400, -(10**400)])
odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e-308, 5e-324])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    odd_floats,
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "é中😀", "x" * 10_000, "\ud800", "get", "GET", "-1", "nan"]),
    st.binary(max_size=10),
)
#: Anything a caller could pass by mistake.
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
        st.frozensets(st.text(max_size=5), max_size=3),
    ),
    max_leaves=6,
)
labels_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "other", "<unmatched>", "é中😀", "a" * 5_000, "\ud800", '\n"\\{}']),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid *strategy*, or the edge values, or anything at all."""
    return st.one_of(strategy, huge_ints, odd_floats, anything)


# -- observing what was recorded and logged ------------------------------------------------

#: Gauges computed from the clock at scrape time: they may change with no input at all.
_CLOCK_DERIVED = frozenset(
    {
        "quota_requests_current_minute",
        "quota_tokens_current_minute",
        "quota_requests_today",
        "quota_tokens_today",
        "quota_rpm_remaining",
        "quota_tpm_remaining",
    }
)

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(registry: CollectorRegistry) -> Snapshot:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name not in _CLOCK_DERIVED and not s.name.endswith("_created")
    }


def assert_sane_change(before: Snapshot, after: Snapshot) -> None:
    """Accepted input: every value finite, counters and histogram parts never decrease."""
    for key, value in after.items():
        name = key[0]
        assert not math.isnan(value), key
        if name.endswith(("_total", "_count", "_sum", "_bucket")):
            assert math.isfinite(value), key
            assert value >= before.get(key, 0.0), key
    assert set(before) <= set(after)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]

    @property
    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@contextmanager
def logged() -> Iterator[Records]:
    """Every record of the ``flask_appmetrics`` loggers (hypothesis cannot use ``caplog``:
    it is one fixture for all the examples of a test). Each example's refusal is logged:
    the once-per-call-site limit starts afresh."""
    reset_log_limits()
    handler = Records()
    logger = logging.getLogger("flask_appmetrics")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def domain_app(*, strict: bool = False) -> tuple[Flask, FlaskMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = FlaskMetrics(registry=registry)
    app = Flask("input_app")
    app.config["APPMETRICS_STRICT"] = strict
    metrics.init_app(app)
    metrics.counter("things_total", "Things", ["kind"])
    metrics.gauge("level", "A level")
    metrics.histogram("score", "A score", ["kind"], buckets=(0.5, 1.0))
    metrics.counter("events_total", "Events")
    metrics.histogram("latency", "A latency", buckets=(0.5, 1.0))
    return app, metrics, registry


def bad_count(value: object) -> bool:
    """Not a token count or amount any caller could mean (``None`` is "unknown")."""
    if value is None:
        return False
    return isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53


def bad_duration(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return True
    return value < 0 or (isinstance(value, int) and value > 2**53)


def check_call(
    fields: tuple[str, ...],
    record: Callable[[], None],
    *,
    must_refuse: bool = False,
    strict_raises: bool = True,
) -> None:
    """Run *record* against a fresh app, non-strict then strict, and check the properties.

    Outside strict mode it must not raise: either it logs a warning naming one of *fields*
    and records nothing, or it records only sane values. In strict mode the same input
    raises ``TypeError``/``ValueError`` naming the field exactly when it was refused.
    *must_refuse*: the input is known bad, so it must have been refused. *strict_raises*
    ``False``: *record* raises an exception of its own, which strict mode must not replace.
    """
    app, _, registry = domain_app()
    with app.test_request_context("/"), logged() as log:
        before = snapshot(registry)
        record()
        after = snapshot(registry)
    assert not log.errors, [r.getMessage() for r in log.errors]  # no internal failure
    assert_no_internal_error(registry)
    refused = [m for m in log.warnings if "invalid" in m]
    assert refused or not must_refuse, "bad input accepted"
    if refused:
        assert after == before, "refused input recorded something"
        assert any(field in refused[0] for field in fields), refused[0]
    else:
        assert_sane_change(before, after)

    strict_app, _, strict_registry = domain_app(strict=True)
    with strict_app.test_request_context("/"):
        before = snapshot(strict_registry)
        if refused and strict_raises:
            with pytest.raises((TypeError, ValueError)) as info:
                record()
            message = str(info.value)
            assert any(message.startswith(field) for field in fields), message
        else:
            record()
        if refused:
            assert snapshot(strict_registry) == before


# -- helpers -----------------------------------------------------------------------------


@EXAMPLES
@given(hit=maybe(st.booleans()), operation=maybe(labels_text), layer=maybe(labels_text))
def test_record_cache_event_with_arbitrary_values(hit: Any, operation: Any, layer: Any) -> None:
    check_call(
        ("hit", "operation", "layer"),
        lambda: record_cache_event(hit=hit, operation=operation, layer=layer),
        must_refuse=not isinstance(hit, bool) or not isinstance(operation, str) or not operation,
    )


counts = maybe(st.integers(min_value=0, max_value=10**9))
durations = maybe(st.floats(min_value=0, max_value=600))


@EXAMPLES
@given(
    endpoint=maybe(labels_text),
    model=maybe(st.sampled_from(["gemini-1.5-flash", "gemini-2.5-pro", "gpt-4o"])),
    tokens=counts,
    duration=durations,
    status=maybe(st.sampled_from(["success", "error"])),
    breakdown=st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": counts,
            "output_tokens": counts,
            "thoughts_tokens": counts,
            "cached_tokens": counts,
        },
    ),
)
def test_record_gemini_usage_with_arbitrary_values(  # noqa: PLR0917 - one per field
    endpoint: Any, model: Any, tokens: Any, duration: Any, status: Any, breakdown: Any
) -> None:
    fields = ("endpoint", "model", "tokens", "duration", "status", *breakdown)
    check_call(
        fields,
        lambda: record_gemini_usage(endpoint, model, tokens, duration, status, **breakdown),
        must_refuse=bad_count(tokens)
        or bad_duration(duration)
        or any(bad_count(v) for v in breakdown.values())
        or not (isinstance(status, str) and status in {"success", "error"}),
    )


class _Usage:
    """A stand-in for google-genai's ``GenerateContentResponseUsageMetadata``."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


usage_metadata = st.one_of(
    anything,
    st.builds(
        _Usage,
        prompt_token_count=counts,
        candidates_token_count=counts,
        thoughts_token_count=counts,
        cached_content_token_count=counts,
        total_token_count=counts,
    ),
    st.dictionaries(
        st.sampled_from(["prompt_token_count", "candidates_token_count", "total_token_count"]),
        counts,
    ),
)


@EXAMPLES
@given(metadata=usage_metadata)
def test_usage_metadata_with_arbitrary_values(metadata: Any) -> None:
    check_call(
        ("usage_metadata", "cached_tokens", "tokens"),
        lambda: record_gemini_usage("/api/generate", "gemini-1.5-flash", usage_metadata=metadata),
    )


@EXAMPLES
@given(
    endpoint=maybe(labels_text),
    model=maybe(labels_text),
    tokens=counts,
    metadata=usage_metadata,
    fails=st.booleans(),
)
def test_track_gemini_call_with_arbitrary_values(
    endpoint: Any, model: Any, tokens: Any, metadata: Any, fails: bool
) -> None:
    def run() -> None:
        expected = pytest.raises(KeyError) if fails else _nothing()
        with expected, track_gemini_call(endpoint, model) as tracked:
            tracked.usage(tokens=tokens)
            tracked.record_response(metadata)
            if fails:
                # The caller's own exception goes through unchanged.
                raise KeyError("the caller's")

    check_call(
        ("endpoint", "model", "tokens", "usage_metadata", "cached_tokens"),
        run,
        strict_raises=not fails,
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@EXAMPLES
@given(
    service=maybe(labels_text),
    event=maybe(st.sampled_from(["success", "failure", "rejected", "state_change", "state"])),
    state=maybe(st.sampled_from(["closed", "half_open", "half-open", "open", None])),
)
def test_record_circuit_breaker_event_with_arbitrary_values(
    service: Any, event: Any, state: Any
) -> None:
    check_call(
        ("service", "event", "state"),
        lambda: record_circuit_breaker_event(service, event, state),
    )


@EXAMPLES
@given(requests=counts, tokens=counts)
def test_record_quota_usage_with_arbitrary_values(requests: Any, tokens: Any) -> None:
    check_call(
        ("requests", "tokens"),
        lambda: record_quota_usage(requests, tokens),
        must_refuse=requests is None or bad_count(requests) or tokens is None or bad_count(tokens),
    )


@EXAMPLES
@given(
    metric=maybe(st.sampled_from(["things_total", "level", "score", "undeclared_total"])),
    value=maybe(st.floats(min_value=-10, max_value=10)),
    labels=maybe(st.fixed_dictionaries({"kind": labels_text})),
)
def test_record_business_event_with_arbitrary_values(metric: Any, value: Any, labels: Any) -> None:
    check_call(
        ("metric", "value", "labels"),
        lambda: record_business_event(metric, value, labels),
    )


@EXAMPLES
@given(
    metric=st.sampled_from(["events_total", "level", "latency"]),
    method=st.sampled_from(["inc", "dec", "set", "observe"]),
    value=maybe(st.floats(min_value=-10, max_value=10)),
)
def test_custom_metric_calls_with_arbitrary_values(metric: str, method: str, value: Any) -> None:
    def record() -> None:
        getattr(declared(metric), method)(value)

    check_call(("amount", "value", method), record)


@EXAMPLES
@given(metric=st.sampled_from(["things_total", "score"]), label=maybe(labels_text))
def test_custom_metric_labels_with_arbitrary_values(metric: str, label: Any) -> None:
    def record() -> None:
        series = declared(metric).labels(kind=label)
        series.inc() if metric == "things_total" else series.observe(0.7)

    check_call(("labels.kind",), record)


def declared(name: str) -> Any:
    """The metric *name* declared by :func:`domain_app` for the app in context."""
    from flask import current_app

    from flask_appmetrics.metrics.custom import declared_metric

    return declared_metric(current_app.extensions["appmetrics"].registry, name)


# -- signal payloads ------------------------------------------------------------------------

_SIGNALS = {
    "cache_event": (signals.cache_event, ("hit", "operation", "layer")),
    "gemini_call": (
        signals.gemini_call,
        ("endpoint", "model", "status", "duration", "tokens", "input_tokens", "output_tokens",
         "thoughts_tokens", "cached_tokens", "usage_metadata"),
    ),
    "circuit_breaker_event": (signals.circuit_breaker_event, ("service", "event", "state")),
    "quota_usage": (signals.quota_usage, ("requests", "tokens")),
    "business_event": (signals.business_event, ("metric", "value", "labels")),
}  # fmt: skip


@EXAMPLES
@pytest.mark.parametrize("name", sorted(_SIGNALS))
@given(data=st.data())
def test_signal_payloads_with_arbitrary_values(name: str, data: st.DataObject) -> None:
    signal, fields = _SIGNALS[name]
    # Known keywords with arbitrary values, some left out, sometimes an unknown one.
    payload = data.draw(
        st.fixed_dictionaries({}, optional=dict.fromkeys(fields, anything)), "payload"
    )
    if data.draw(st.booleans(), "unknown keyword"):
        payload[data.draw(st.sampled_from(["colour", "Tokens", "hit_", "é"]), "key")] = 1
    unknown = set(payload) - set(fields)

    def send() -> None:
        from flask import current_app

        signal.send(current_app._get_current_object(), **payload)  # type: ignore[attr-defined]

    check_call((*fields, *unknown), send)


def test_a_signal_sent_by_an_app_without_the_extension_does_nothing() -> None:
    bare = Flask("bare")
    with logged() as log:
        for signal, fields in _SIGNALS.values():
            payload: dict[str, Any] = dict.fromkeys(fields, math.nan)
            # No receiver ran (blinker returns one result per receiver called) ...
            assert signal.send(bare, **payload) == [], signal.name
    # ... so nothing was refused, logged or counted.
    assert not log.warnings, log.warnings
    assert not log.errors, [r.getMessage() for r in log.errors]


# -- configuration ----------------------------------------------------------------------------


def _harmless(key: str, value: Any) -> bool:
    """Values that would reach a real service (a valid-looking Sentry DSN or Redis URL)
    belong to those integrations' own tests, not to a fuzzer."""
    if key in {"APPMETRICS_SENTRY_DSN", "APPMETRICS_REDIS_URL"} and isinstance(value, str):
        return "://" not in value and "@" not in value
    return True


config_values = st.one_of(
    anything,
    st.text(max_size=20).map(lambda s: "/" + s),
    st.lists(st.floats(allow_nan=True), max_size=5),
    st.dictionaries(st.text(max_size=12), anything, max_size=3),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@pytest.mark.parametrize("key", sorted(DEFAULTS))
@given(value=config_values)
def test_every_config_key_accepts_or_names_itself(key: str, value: Any) -> None:
    assume(_harmless(key, value))
    app = Flask("config_app")
    app.config[key] = value
    error: ConfigurationError | None = None
    try:
        FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    except ConfigurationError as exc:
        error = exc
    if error is not None:
        assert error.key == key or key in str(error), (key, str(error))
        assert "appmetrics" not in app.extensions  # nothing half-initialised
    elif isinstance(value, str) or type(value) is int:
        # A string (or 0/1 for a boolean) may be parsed: app.config then holds the value
        # in effect, one that reads back the same way.
        again = Flask("config_again")
        again.config[key] = app.config[key]
        FlaskMetrics(registry=CollectorRegistry()).init_app(again)
        assert again.config[key] == app.config[key]
    else:
        assert app.config[key] is value  # kept visibly, as given


# -- headers -----------------------------------------------------------------------------------

header_values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "application/openmetrics-text;version=9.9.9",
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "*/*;q=nan",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/health+json",
            "gzip",
            "gzip;q=0",
            "Bearer ",
            "Bearer secret-token",
            "Basic " + "x" * 3000,
            "Basic ZHVtbXk=",  # base64 without a colon
            "Basic !!!notbase64",
            "\x00\x01\x7f",
            "é中😀",
        ]
    ),
)


def _answer(app: Flask, path: str, headers: dict[str, str]) -> tuple[str, bytes]:
    return respond(app, environ_for("GET", path, headers=headers))


def _plain_app(name: str) -> Flask:
    app = Flask(name)

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    return app


@settings(max_examples=80, deadline=None)
@pytest.mark.parametrize("auth", [False, True])
@given(
    headers=st.dictionaries(
        st.sampled_from(
            ["Accept", "Accept-Encoding", "Authorization", "Cookie", "User-Agent",
             "X-Forwarded-For", "Content-Type"]
        ),
        header_values,
    )
)  # fmt: skip
def test_headers_with_arbitrary_values(auth: bool, headers: dict[str, str]) -> None:
    registry = CollectorRegistry()
    app = _plain_app("instrumented")
    if auth:
        app.config["APPMETRICS_AUTH_TOKEN"] = "secret-token"
    FlaskMetrics(registry=registry).init_app(app)
    bare = _plain_app("bare")

    with logged() as log:
        assert _answer(app, "/hello", headers) == _answer(bare, "/hello", headers)
        metrics_status, _ = _answer(app, "/metrics", headers)
        health_status, _ = _answer(app, "/api/health", headers)
    # Never a 500: a page, a refusal (406/401) at worst.
    assert metrics_status[:3] in {"200", "401", "403", "406"}, metrics_status
    assert health_status[:3] in {"200", "401", "403", "406"}, health_status
    if not auth:
        assert metrics_status.startswith("200")
    assert not log.errors, [r.getMessage() for r in log.errors]
    assert_no_internal_error(registry)
    hello = registry.get_sample_value(
        "http_requests_total", {"method": "GET", "endpoint": "/hello", "status": "200"}
    )
    assert hello == 1.0
    total = sum(
        s.value for f in registry.collect() for s in f.samples if s.name == "http_requests_total"
    )
    assert total == 3.0


def test_odd_methods_are_counted_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    app = _plain_app("app")
    FlaskMetrics(registry=registry).init_app(app)
    for method in ("BREW", "get", "X" * 500, "PROPFIND"):
        call(app, environ_for(method, "/hello"))
    # werkzeug upper-cases methods: "get" is a GET. The others match no rule's method.
    assert (
        registry.get_sample_value(
            "http_requests_total", {"method": "GET", "endpoint": "/hello", "status": "200"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "_OTHER", "endpoint": "<unmatched>", "status": "405"},
        )
        == 3.0
    )


# -- inside a real request -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    tokens=anything,
    duration=anything,
    hit=anything,
    service=anything,
)
def test_a_view_calling_helpers_with_bad_values_answers_as_usual(
    tokens: Any, duration: Any, hit: Any, service: Any
) -> None:
    app, _, registry = domain_app()

    @app.get("/generate")
    def generate() -> str:
        record_gemini_usage("/api/generate", "gemini-1.5-flash", tokens, duration)
        record_cache_event(hit=hit)
        record_circuit_breaker_event(service, "success")
        record_quota_usage(tokens)
        return "generated"

    with logged() as log:
        response = app.test_client().get("/generate")
    assert response.status_code == 200
    assert response.data == b"generated"
    assert not log.errors
    labels = {"method": "GET", "endpoint": "/generate", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 1
    assert_no_internal_error(registry)
