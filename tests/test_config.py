"""APPMETRICS_* configuration: read once, defaults visible, validated at start."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.config import DEFAULTS

from .conftest import AppFactory


def test_defaults_are_visible_in_app_config(app: Flask) -> None:
    for key, default in DEFAULTS.items():
        assert app.config[key] == default, key


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
        ("APPMETRICS_BUCKETS", "0.1,1"),
        ("APPMETRICS_EXCLUDE_PATHS", "/metrics"),
        ("APPMETRICS_EXCLUDE_PATHS", [""]),
        ("APPMETRICS_METRICS_PATH", "metrics"),
        ("APPMETRICS_METRICS_PATH", 3),
        ("APPMETRICS_MAX_ERROR_TYPES", 0),
        ("APPMETRICS_MAX_ERROR_TYPES", "10"),
        ("APPMETRICS_STRICT", "yes"),
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
