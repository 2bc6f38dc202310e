"""flask-appmetrics: production monitoring for Flask in one line."""

from ._checks import CheckResult, HealthCheck
from ._version import __version__
from .errors import (
    AlreadyInitializedError,
    AppMetricsError,
    ConfigurationError,
    MetricConflictError,
)
from .extension import FlaskMetrics
from .health import HealthReport, default_user_identity, get_health_status

__all__ = [
    "AlreadyInitializedError",
    "AppMetricsError",
    "CheckResult",
    "ConfigurationError",
    "FlaskMetrics",
    "HealthCheck",
    "HealthReport",
    "MetricConflictError",
    "__version__",
    "default_user_identity",
    "get_health_status",
]
