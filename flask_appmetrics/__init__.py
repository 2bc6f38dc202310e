"""flask-appmetrics: production monitoring for Flask in one line."""

from ._version import __version__
from .errors import (
    AlreadyInitializedError,
    AppMetricsError,
    ConfigurationError,
    MetricConflictError,
    RouteConflictError,
    RouteConflictWarning,
    UnknownMetricError,
)
from .extension import FlaskMetrics
from .health.checks import CheckResult, HealthCheck
from .health.monitor import HealthReport
from .helpers import (
    get_health_status,
    quota_usage,
    record_business_event,
    record_cache_event,
    record_circuit_breaker_event,
    record_gemini_usage,
    record_quota_usage,
    track_gemini_call,
)
from .llm.pricing import DEFAULT_GEMINI_PRICES
from .llm.quota import InMemoryQuota, QuotaCounter, QuotaLimits, QuotaUsage
from .metrics.custom import CustomMetric
from .recording.identity import default_user_identity

__all__ = [
    "DEFAULT_GEMINI_PRICES",
    "AlreadyInitializedError",
    "AppMetricsError",
    "CheckResult",
    "ConfigurationError",
    "CustomMetric",
    "FlaskMetrics",
    "HealthCheck",
    "HealthReport",
    "InMemoryQuota",
    "MetricConflictError",
    "QuotaCounter",
    "QuotaLimits",
    "QuotaUsage",
    "RouteConflictError",
    "RouteConflictWarning",
    "UnknownMetricError",
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
]
