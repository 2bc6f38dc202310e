"""``APPMETRICS_*`` values given as strings, the way the environment gives them.

Each case runs two ways: the string set in ``app.config`` as it is (an app copying
``os.environ``), and the variable ``FLASK_APPMETRICS_...`` read by Flask's own
``app.config.from_prefixed_env()``, which parses JSON first (``15``, ``true``, ``null``,
``[...]`` arrive typed; the rest as strings). Both must end in the same setting, and
``app.config`` then holds the value in effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.settings import Settings

Read = Callable[[Settings], Any]

#: (key, the string, what the settings hold, what app.config holds afterwards)
ACCEPTED: list[tuple[str, str, Read, Any, Any]] = [
    ("APPMETRICS_QUOTA_RPM", "15", lambda s: s.shared.quota_limits.rpm, 15, 15),
    ("APPMETRICS_SLO_WINDOW_DAYS", "28", lambda s: s.slo.period_seconds, 28 * 86_400.0, 28.0),
    (
        "APPMETRICS_SLOS",
        '[{"name": "api", "latency": ["250ms", 0.99]}]',
        lambda s: s.slo.declarations[0].latency,
        (0.25, 0.99),
        ({"name": "api", "latency": ["250ms", 0.99]},),
    ),
    (
        "APPMETRICS_QUOTA_TPD",
        " 1_000_000 ",
        lambda s: s.shared.quota_limits.tpd,
        1_000_000,
        1_000_000,
    ),
    ("APPMETRICS_QUOTA_RPM", "null", lambda s: s.shared.quota_limits.rpm, None, None),
    ("APPMETRICS_QUOTA_RPM", "None", lambda s: s.shared.quota_limits.rpm, None, None),
    ("APPMETRICS_STRICT", "true", lambda s: s.strict, True, True),
    ("APPMETRICS_STRICT", "0", lambda s: s.strict, False, False),
    ("APPMETRICS_STRICT", "1", lambda s: s.strict, True, True),
    ("APPMETRICS_STRICT", "Yes", lambda s: s.strict, True, True),
    ("APPMETRICS_STRICT", "off", lambda s: s.strict, False, False),
    (
        "APPMETRICS_BUCKETS",
        "0.1,0.5,1",
        lambda s: s.http.buckets,
        (0.1, 0.5, 1.0),
        (0.1, 0.5, 1.0),
    ),
    (
        "APPMETRICS_BUCKETS",
        "[0.1, 0.5, 1]",
        lambda s: s.http.buckets,
        (0.1, 0.5, 1.0),
        (0.1, 0.5, 1.0),
    ),
    (
        "APPMETRICS_BUCKETS",
        "0.1, 2, +Inf",
        lambda s: s.http.buckets,
        (0.1, 2.0),  # prometheus_client adds +Inf itself
        (0.1, 2.0, math.inf),
    ),
    (
        "APPMETRICS_EXCLUDE_PATHS",
        "/internal, /admin",
        lambda s: s.http.exclude_paths,
        ("/internal", "/admin"),
        ("/internal", "/admin"),
    ),
    (
        "APPMETRICS_EXCLUDE_PATHS",
        "/internal",
        lambda s: s.http.exclude_paths,
        ("/internal",),
        ("/internal",),
    ),
    ("APPMETRICS_EXCLUDE_PATHS", "", lambda s: s.http.exclude_paths, (), ()),
    (
        "APPMETRICS_GEMINI_MODELS",
        '["gemini-2.5-flash", "gemini-2.5-pro"]',
        lambda s: s.shared.gemini_models,
        ("gemini-2.5-flash", "gemini-2.5-pro"),
        ("gemini-2.5-flash", "gemini-2.5-pro"),
    ),
    ("APPMETRICS_STATUS_PATH", "none", lambda s: s.status.path, None, None),
    (
        "APPMETRICS_METRICS_PATH",
        "/internal/metrics",
        lambda s: s.endpoints.metrics_path,
        "/internal/metrics",
        "/internal/metrics",
    ),
    ("APPMETRICS_STATUS_REFRESH_SECONDS", "10", lambda s: s.status.refresh_seconds, 10.0, 10),
    (
        "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS",
        "2.5",
        lambda s: s.health.latency_threshold_seconds,
        2.5,
        2.5,
    ),
    (
        "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS",
        "null",
        lambda s: s.health.latency_threshold_seconds,
        None,
        None,
    ),
    ("APPMETRICS_MAX_LABEL_VALUES", "30", lambda s: s.shared.max_label_values, 30, 30),
    (
        "APPMETRICS_SENTRY_OPTIONS",
        '{"traces_sample_rate": 0.1}',
        lambda s: s.sentry.options,
        {"traces_sample_rate": 0.1},
        {"traces_sample_rate": 0.1},
    ),
    (
        "APPMETRICS_GEMINI_PRICES",
        '{"my-model": {"input": 1, "output": 2}}',
        lambda s: dict(s.shared.gemini_prices)["my-model"].input,
        1.0,
        {"my-model": {"input": 1, "output": 2}},
    ),
]


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [f"{case[0].removeprefix('APPMETRICS_')}={case[1]!r}" for case in cases]


def _initialised(app: Flask) -> Settings:
    FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    settings: Settings = app.extensions["appmetrics"].settings
    return settings


def _from_environment(monkeypatch: pytest.MonkeyPatch, key: str, text: str) -> Flask:
    monkeypatch.setenv(f"FLASK_{key}", text)
    app = Flask("from_env")
    app.config.from_prefixed_env()
    return app


def _as_string(key: str, text: str) -> Flask:
    app = Flask("as_string")
    app.config[key] = text
    return app


ROUTES = ["as a string in app.config", "through from_prefixed_env()"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", ACCEPTED, ids=_ids(ACCEPTED))
def test_unambiguous_strings_are_parsed(
    route: str, case: tuple[str, str, Read, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, text, read, setting, in_config = case
    app = _as_string(key, text) if route == ROUTES[0] else _from_environment(monkeypatch, key, text)
    assert read(_initialised(app)) == setting
    # app.config holds the value in effect, typed (from JSON, a list stays a list).
    held = app.config[key]
    if isinstance(held, list):
        held = tuple(held)
    assert held == in_config
    assert isinstance(held, bool) == isinstance(in_config, bool)


def test_the_parsed_values_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the environment to the page: the quota limit, the buckets, strict mode."""
    monkeypatch.setenv("FLASK_APPMETRICS_QUOTA_RPM", "15")
    monkeypatch.setenv("FLASK_APPMETRICS_BUCKETS", "0.1,0.5,1")
    monkeypatch.setenv("FLASK_APPMETRICS_STRICT", "true")
    app = Flask("env_app")
    app.config.from_prefixed_env()
    registry = CollectorRegistry()
    metrics = FlaskMetrics(app, registry=registry)
    jobs = metrics.counter("jobs_total", "Jobs")

    app.test_client().get("/livez")
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) == 15.0
    assert registry.get_sample_value("quota_rpm_remaining") == 15.0
    labels = {"method": "GET", "endpoint": "/livez"}
    assert registry.get_sample_value("http_request_duration_seconds_bucket", labels | {"le": "0.5"})
    assert (
        registry.get_sample_value("http_request_duration_seconds_bucket", labels | {"le": "0.25"})
        is None
    )
    with app.app_context(), pytest.raises(ValueError, match=r"^amount:"):
        jobs.inc(-1)  # strict: refused input raises


#: (key, the string, what the message says)
REFUSED: list[tuple[str, str, str]] = [
    ("APPMETRICS_QUOTA_RPM", "15.5", "expected an integer, got"),
    ("APPMETRICS_QUOTA_RPM", "fifteen", "expected an integer, got 'fifteen'"),
    ("APPMETRICS_QUOTA_RPM", "-1", "must be at least 1"),
    ("APPMETRICS_STRICT", "maybe", "expected true or false (also yes/no, on/off, 1/0)"),
    ("APPMETRICS_BUCKETS", "0.1,fast", "expected a number, got 'fast'"),
    ("APPMETRICS_BUCKETS", "1,0.5", "strictly increasing"),
    ("APPMETRICS_BUCKETS", "", "expected a non-empty list of numbers"),
    ("APPMETRICS_EXCLUDE_PATHS", '["/a", 3]', "expected non-empty strings, got 3"),
    ("APPMETRICS_SENTRY_OPTIONS", "traces_sample_rate=0.1", "expected a JSON object"),
    ("APPMETRICS_SENTRY_OPTIONS", "[1]", "JSON object"),
    ("APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO", "nan", "finite"),
    ("APPMETRICS_STATUS_REFRESH_SECONDS", "soon", "expected a number, got 'soon'"),
    ("APPMETRICS_METRICS_PATH", "metrics", "must start with '/'"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("key", "text", "message"), REFUSED, ids=_ids(REFUSED))
def test_other_strings_are_refused_naming_the_key(
    route: str, key: str, text: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _as_string(key, text) if route == ROUTES[0] else _from_environment(monkeypatch, key, text)
    with pytest.raises(ConfigurationError) as raised:
        _initialised(app)
    assert raised.value.key == key
    assert message in str(raised.value)
    assert "appmetrics" not in app.extensions


def test_a_numeric_secret_read_as_json_says_how_to_quote_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # from_prefixed_env() turns FLASK_APPMETRICS_AUTH_TOKEN=12345 into the int 12345.
    app = _from_environment(monkeypatch, "APPMETRICS_AUTH_TOKEN", "12345")
    with pytest.raises(ConfigurationError, match="quote") as raised:
        _initialised(app)
    assert raised.value.key == "APPMETRICS_AUTH_TOKEN"


def test_strings_are_not_guessed_where_they_could_mean_two_things() -> None:
    # A token spelt "none" is a token: credentials are never read as None.
    app = _as_string("APPMETRICS_AUTH_TOKEN", "none-of-your-business-0123")
    settings = _initialised(app)
    assert settings.auth.token == "none-of-your-business-0123"
    # A JSON array is read as JSON, never split at its commas.
    app = _as_string("APPMETRICS_EXCLUDE_PATHS", '["/a,b", "/c"]')
    assert _initialised(app).http.exclude_paths == ("/a,b", "/c")


@pytest.mark.parametrize(
    ("key", "suggested"),
    [
        ("APPMETRICS_BUCKTES", "did you mean APPMETRICS_BUCKETS?"),
        ("APPMETRICS_QUOTA_RPS", "did you mean APPMETRICS_QUOTA_RPM or APPMETRICS_QUOTA_RPD?"),
        ("APPMETRICS_TOKEN", "did you mean APPMETRICS_AUTH_TOKEN?"),
        ("APPMETRICS_METRICS_TOKEN", "APPMETRICS_AUTH_TOKEN"),
        ("APPMETRICS_STRICT_MODE", "did you mean APPMETRICS_STRICT?"),
        ("APPMETRICS_LATENCY_THRESHOLD", "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS"),
    ],
)
def test_an_unknown_key_names_the_closest_real_ones(key: str, suggested: str) -> None:
    app = _as_string(key, "1")
    with pytest.raises(ConfigurationError) as raised:
        _initialised(app)
    assert raised.value.key == key
    assert suggested in str(raised.value)


def test_an_unknown_key_like_no_real_one_says_so() -> None:
    app = _as_string("APPMETRICS_XYZ", "1")
    with pytest.raises(ConfigurationError) as raised:
        _initialised(app)
    assert "did you mean" not in str(raised.value)
    assert "unknown flask-appmetrics setting" in str(raised.value)


def test_an_unknown_key_from_the_environment_names_the_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _from_environment(monkeypatch, "APPMETRICS_QUOTA_PRM", "10")
    with pytest.raises(ConfigurationError, match=r"did you mean .*APPMETRICS_QUOTA_RPM"):
        _initialised(app)
