"""flask-appmetrics: production monitoring for Flask in one line."""

from ._version import __version__
from .errors import (
    AlreadyInitializedError,
    AppMetricsError,
    ConfigurationError,
    MetricConflictError,
)
from .extension import FlaskMetrics

__all__ = [
    "AlreadyInitializedError",
    "AppMetricsError",
    "ConfigurationError",
    "FlaskMetrics",
    "MetricConflictError",
    "__version__",
]
