"""The package's public surface: the import paths and names users write.

Where a public name is defined inside the package is free to change; these paths are not.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import flask_appmetrics

#: ``from flask_appmetrics import ...``: everything the package exports.
PUBLIC_NAMES = {
    "AlreadyInitializedError",
    "AppMetricsError",
    "CheckResult",
    "ConfigurationError",
    "CustomMetric",
    "DEFAULT_GEMINI_PRICES",
    "FlaskMetrics",
    "HealthCheck",
    "HealthReport",
    "InMemoryQuota",
    "MetricConflictError",
    "QuotaCounter",
    "QuotaLimits",
    "QuotaUsage",
    "RouteConflictError",
    "UnknownMetricError",
    "RouteConflictWarning",
    "__version__",
    "default_user_identity",
    "get_health_status",
    "quota_usage",
    "record_business_event",
    "record_cache_event",
    "record_circuit_breaker_event",
    "record_gemini_usage",
    "record_quota_usage",
    "track_gemini_call",
}

#: Submodules users import by path, and the names they take from each.
PUBLIC_MODULES = {
    "flask_appmetrics.signals": {
        "cache_event",
        "gemini_call",
        "circuit_breaker_event",
        "quota_usage",
        "business_event",
        "app_initialized",
    },
    "flask_appmetrics.errors": {
        "AppMetricsError",
        "AlreadyInitializedError",
        "ConfigurationError",
        "MetricConflictError",
        "RouteConflictError",
        "RouteConflictWarning",
        "UnknownMetricError",
    },
    "flask_appmetrics.config": {"DEFAULTS"},
    "flask_appmetrics.gunicorn": {"on_starting", "when_ready", "child_exit"},
    "flask_appmetrics.integrations.caching": {"instrument_cache"},
    "flask_appmetrics.integrations.pybreaker": {"monitor_breaker"},
    "flask_appmetrics.integrations.genai": {"token_usage", "TokenUsage"},
    "flask_appmetrics.integrations.sentry": {"init_sentry"},
}


def test_public_names_are_exported() -> None:
    assert set(flask_appmetrics.__all__) == PUBLIC_NAMES
    missing = [name for name in PUBLIC_NAMES if not hasattr(flask_appmetrics, name)]
    assert not missing, missing


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_public_modules_keep_their_names(module: str) -> None:
    imported = importlib.import_module(module)
    missing = sorted(name for name in PUBLIC_MODULES[module] if not hasattr(imported, name))
    assert not missing, missing


def test_the_exceptions_users_catch_are_one_family() -> None:
    from flask_appmetrics import errors

    for name in PUBLIC_MODULES["flask_appmetrics.errors"] - {"RouteConflictWarning"}:
        exception = getattr(errors, name)
        assert inspect.isclass(exception), name
        assert issubclass(exception, errors.AppMetricsError), name
    assert issubclass(errors.RouteConflictWarning, Warning)
    # The package exports the same classes the errors module defines.
    assert flask_appmetrics.ConfigurationError is errors.ConfigurationError
