"""APPMETRICS_* configuration: read once, defaults visible, validated at start."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.config import DEFAULTS
from tests.support.apps import AppFactory

#: The documented defaults, written out: a change to one is a change users see.
EXPECTED_DEFAULTS: dict[str, Any] = {
    "APPMETRICS_METRICS_PATH": "/metrics",
    "APPMETRICS_HEALTH_PATH": "/api/health",
    "APPMETRICS_LIVEZ_PATH": "/livez",
    "APPMETRICS_READYZ_PATH": "/readyz",
    "APPMETRICS_STATUS_PATH": "/status",
    "APPMETRICS_STATUS_REFRESH_SECONDS": 5.0,
    "APPMETRICS_BUCKETS": (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
    ),
    "APPMETRICS_EXCLUDE_PATHS": (),
    "APPMETRICS_MAX_ERROR_TYPES": 50,
    "APPMETRICS_STRICT": False,
    # A plain app names no Gemini endpoint or model, so it exports no series for them.
    "APPMETRICS_GEMINI_ENDPOINTS": (),
    "APPMETRICS_GEMINI_MODELS": (),
    "APPMETRICS_GEMINI_PRICES": {
        "gemini-1.5-flash": {"input": 0.075, "output": 0.3, "cached": 0.01875},
        "gemini-1.5-flash-8b": {"input": 0.0375, "output": 0.15, "cached": 0.01},
        "gemini-1.5-pro": {"input": 1.25, "output": 5.0, "cached": 0.3125},
        "gemini-2.0-flash": {"input": 0.1, "output": 0.4, "cached": 0.025},
        "gemini-2.0-flash-lite": {"input": 0.075, "output": 0.3},
        "gemini-2.5-flash": {"input": 0.3, "output": 2.5, "cached": 0.03},
        "gemini-2.5-flash-lite": {"input": 0.1, "output": 0.4, "cached": 0.01},
        "gemini-2.5-pro": {
            "input": 1.25, "output": 10.0, "cached": 0.125,
            "long_context": {"threshold": 200000, "input": 2.5, "output": 15.0, "cached": 0.25},
        },
    },
    "APPMETRICS_GEMINI_DEFAULT_ENDPOINT": "<background>",
    "APPMETRICS_GEMINI_DAILY_BUDGET_USD": None,
    "APPMETRICS_LLM_FAMILIES": ("gemini", "gen_ai"),
    "APPMETRICS_MAX_LABEL_VALUES": 20,
    "APPMETRICS_MAX_LABEL_LENGTH": 128,
    "APPMETRICS_QUOTA_RPM": None,
    "APPMETRICS_QUOTA_TPM": None,
    "APPMETRICS_QUOTA_RPD": None,
    "APPMETRICS_QUOTA_TPD": None,
    "APPMETRICS_QUOTA_TIMEZONE": "America/Los_Angeles",
    "APPMETRICS_HEALTH_LATENCY_WINDOW": 100,
    "APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": 300,
    "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 0.05,
    "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": 0.5,
    "APPMETRICS_HEALTH_MIN_REQUESTS": 20,
    "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": 5.0,
    "APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS": 0.5,
    "APPMETRICS_HEALTH_CHECK_CACHE_SECONDS": 5.0,
    "APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS": 1.0,
    "APPMETRICS_DRAIN_SECONDS": 0.0,
    "APPMETRICS_USERS_WINDOW_SECONDS": 300,
    "APPMETRICS_USERS_MAX_TRACKED": 10000,
    "APPMETRICS_AUTH_TOKEN": None,
    "APPMETRICS_AUTH_USERNAME": None,
    "APPMETRICS_AUTH_PASSWORD": None,
    "APPMETRICS_AUTH_HEALTH": "details",
    "APPMETRICS_SENTRY_DSN": None,
    "APPMETRICS_SENTRY_ENVIRONMENT": None,
    "APPMETRICS_SENTRY_RELEASE": None,
    "APPMETRICS_SENTRY_OPTIONS": {},
    "APPMETRICS_SENTRY_SCRUB_FIELDS": (),
    "APPMETRICS_REDIS_URL": None,
    "APPMETRICS_REDIS_PREFIX": "appmetrics:{app_name}",
    "APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS": 0.05,
    "APPMETRICS_REDIS_RETRY_SECONDS": 5.0,
    "APPMETRICS_REDIS_FLUSH_SECONDS": 1.0,
    "APPMETRICS_SLOS": (),
    "APPMETRICS_SLO_WINDOW_DAYS": 30,
}  # fmt: skip


def test_defaults_are_visible_in_app_config(app: Flask) -> None:
    # Every key the extension reads has a written-out default here, and the app sees it.
    assert set(DEFAULTS) == set(EXPECTED_DEFAULTS)
    wrong = {
        key: app.config[key]
        for key, expected in EXPECTED_DEFAULTS.items()
        if app.config[key] != expected
    }
    assert not wrong, wrong


def test_user_values_are_kept(app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_EXCLUDE_PATHS": ["/x"], "APPMETRICS_STRICT": True})
    assert app.config["APPMETRICS_EXCLUDE_PATHS"] == ["/x"]
    assert app.extensions["appmetrics"].settings.strict is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APPMETRICS_BUCKETS", []),
        ("APPMETRICS_BUCKETS", [1.0, 0.5]),
        ("APPMETRICS_BUCKETS", ["fast", "slow"]),
        ("APPMETRICS_BUCKETS", "0.1,fast"),
        ("APPMETRICS_BUCKETS", "1,0.1"),
        ("APPMETRICS_EXCLUDE_PATHS", 3),
        ("APPMETRICS_EXCLUDE_PATHS", [""]),
        ("APPMETRICS_METRICS_PATH", "metrics"),
        ("APPMETRICS_METRICS_PATH", 3),
        ("APPMETRICS_MAX_ERROR_TYPES", 0),
        ("APPMETRICS_MAX_ERROR_TYPES", "ten"),
        ("APPMETRICS_STRICT", "maybe"),
        ("APPMETRICS_STRICT", 2),
        ("APPMETRICS_BUCKTES", [1.0]),
    ],
)
def test_bad_values_fail_at_init_naming_the_key(
    key: str, value: Any, metrics: FlaskMetrics
) -> None:
    app = Flask("bad")
    app.config[key] = value
    with pytest.raises(ConfigurationError) as info:
        metrics.init_app(app)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert "appmetrics" not in app.extensions


def test_two_views_on_one_path_are_refused(metrics: FlaskMetrics) -> None:
    app = Flask("same_path")
    app.config["APPMETRICS_HEALTH_PATH"] = "/metrics"
    with pytest.raises(ConfigurationError) as info:
        metrics.init_app(app)
    assert info.value.key == "APPMETRICS_HEALTH_PATH"
    assert "APPMETRICS_METRICS_PATH" in str(info.value)


def test_mutable_defaults_are_not_shared_between_apps(app_factory: AppFactory) -> None:
    one, two = app_factory(), app_factory()
    one.config["APPMETRICS_SENTRY_OPTIONS"]["traces_sample_rate"] = 0.5
    assert two.config["APPMETRICS_SENTRY_OPTIONS"] == {}
    assert DEFAULTS["APPMETRICS_SENTRY_OPTIONS"] == {}


def test_a_bucket_bound_beyond_any_float_names_the_key(metrics: FlaskMetrics) -> None:
    app = Flask("huge_bucket")
    app.config["APPMETRICS_BUCKETS"] = [1, 10**400]
    with pytest.raises(ConfigurationError) as info:
        metrics.init_app(app)
    assert info.value.key == "APPMETRICS_BUCKETS"


# -- settings that could never work are refused at start ------------------------------------

TOKEN = "metrics-token-0123456789"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("APPMETRICS_AUTH_TOKEN", " " + TOKEN, "whitespace"),
        ("APPMETRICS_AUTH_TOKEN", TOKEN + " ", "whitespace"),
        ("APPMETRICS_AUTH_TOKEN", TOKEN + "\t\n", "whitespace"),
        ("APPMETRICS_AUTH_TOKEN", TOKEN + "\n\n", "whitespace"),
        ("APPMETRICS_AUTH_TOKEN", "tökén-0123456789abcdef", "non-ASCII"),
        ("APPMETRICS_AUTH_TOKEN", "token\x00-0123456789abcdef", "control characters"),
        ("APPMETRICS_AUTH_TOKEN", "\n", "empty"),
        ("APPMETRICS_AUTH_USERNAME", " prometheus", "whitespace"),
        ("APPMETRICS_AUTH_USERNAME", "prome\x1btheus", "control characters"),
        ("APPMETRICS_AUTH_USERNAME", "prom:etheus", "':'"),
        ("APPMETRICS_AUTH_PASSWORD", "hunter2hunter2 ", "whitespace"),
        ("APPMETRICS_AUTH_PASSWORD", "hunter2\rhunter2", "control characters"),
        ("APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", 5e-324, "between 1.0"),
        ("APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", 0.5, "between 1.0"),
        ("APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", 1e300, "between 1.0"),
        ("APPMETRICS_USERS_WINDOW_SECONDS", 5e-324, "between 1.0"),
        ("APPMETRICS_USERS_WINDOW_SECONDS", float("inf"), "finite"),
        ("APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS", 5e-324, "between 0.001"),
        ("APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS", float("nan"), "finite"),
        ("APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS", 1e-9, "between 0.001"),
        ("APPMETRICS_STATUS_REFRESH_SECONDS", 5e-324, "between 0.5"),
        ("APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS", 5e-324, "between 0.001"),
        ("APPMETRICS_REDIS_RETRY_SECONDS", -1.0, "between 0.0"),
        ("APPMETRICS_REDIS_FLUSH_SECONDS", float("inf"), "finite"),
    ],
)
def test_settings_that_can_never_work_are_refused_naming_the_key_and_why(
    key: str, value: Any, why: str, metrics: FlaskMetrics
) -> None:
    app = Flask("never_works")
    # Basic auth needs both keys: give the other one a valid value.
    partner = {
        "APPMETRICS_AUTH_USERNAME": ("APPMETRICS_AUTH_PASSWORD", "hunter2hunter2"),
        "APPMETRICS_AUTH_PASSWORD": ("APPMETRICS_AUTH_USERNAME", "prometheus"),
    }
    if key in partner:
        other, valid = partner[key]
        app.config[other] = valid
    app.config[key] = value
    with pytest.raises(ConfigurationError) as info:
        metrics.init_app(app)
    assert info.value.key == key
    assert why in str(info.value)
    # The secret itself is never echoed.
    assert TOKEN not in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "appmetrics" not in app.extensions


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_secrets_files_final_newline_is_dropped_with_a_note(
    ending: str, app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="flask_appmetrics")
    app = app_factory({
        "APPMETRICS_AUTH_TOKEN": TOKEN + ending,
        "APPMETRICS_AUTH_USERNAME": "prometheus" + ending,
        "APPMETRICS_AUTH_PASSWORD": "pässword" + ending,
    })  # fmt: skip
    assert app.config["APPMETRICS_AUTH_TOKEN"] == TOKEN + ending  # left as given
    client = app.test_client()
    bearer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    basic = client.get("/metrics", auth=("prometheus", "pässword"))
    assert basic.status_code == 200
    assert client.get("/metrics").status_code == 401
    notes = [r.getMessage() for r in caplog.records if "ends with a newline" in r.getMessage()]
    assert len(notes) == 3
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", 1),
        ("APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", 86_400),
        ("APPMETRICS_USERS_WINDOW_SECONDS", 1.0),
        ("APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS", 0.001),
        ("APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS", 0.005),
    ],
)
def test_window_and_timeout_bounds_accept_sensible_values(
    key: str, value: float, app_factory: AppFactory
) -> None:
    app = app_factory({key: value})
    assert app.test_client().get("/api/health").status_code == 200
