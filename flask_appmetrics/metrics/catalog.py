"""The metric catalog: every family flask-appmetrics exports, built once per registry.

Names and labels are the ones the seed's dashboards use (see DESIGN.md); they are fixed
here and nowhere else. :func:`metric_set_for` returns the one :class:`MetricSet` of a
``CollectorRegistry``, building it on first use, so any number of apps, tests and
``init_app`` calls share it instead of registering the same names again.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .._version import __version__
from ..errors import ConfigurationError, UnknownMetricError
from .llm_families import DOMAIN_SPECS
from .registration import MetricSpec, declare, declare_all

#: Every ``component`` of ``flask_appmetrics_internal_errors_total``: the places that catch a
#: failure of the extension itself and count it. Each series is created at 0 when a registry's
#: set is built, because ``increase()`` only sees a rise from a sample it already had: a
#: series born at 1 would hide the first failure from the internal-errors alert.
INTERNAL_ERROR_COMPONENTS: tuple[str, ...] = (
    # request instrumentation
    "before_request",
    "after_request",
    "got_request_exception",
    "finish",
    "user_identity",
    # health, probes and the status page
    "health",
    "readyz",
    "status_page",
    "concurrent_users",
    "redis",
    # signal receivers and values read at scrape time
    "signal_receiver",
    "cache_event",
    "gemini_call",
    "circuit_breaker_event",
    "quota_usage",
    "business_event",
    "scrape_value",
    # direct calls on custom metrics
    "custom_metric",
)

CACHE_OPERATIONS = MetricSpec(
    "counter", "cache_operations_total", "Total cache operations", ("operation", "result")
)

#: The fixed part of the catalog. ``http_request_duration_seconds`` is added with the
#: configured buckets by :func:`_build`.
CATALOG: tuple[MetricSpec, ...] = (
    # -- HTTP ----------------------------------------------------------------------
    MetricSpec(
        "counter", "http_requests_total", "Total HTTP requests", ("method", "endpoint", "status")
    ),
    MetricSpec(
        "gauge",
        "http_requests_in_progress",
        "HTTP requests being served",
        ("method", "endpoint"),
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "counter",
        "application_errors_total",
        "Unhandled exceptions raised by views, by endpoint and exception type",
        ("endpoint", "error_type"),
    ),
    # -- quota ---------------------------------------------------------------------
    MetricSpec("gauge", "quota_requests_current_minute", "API requests in the current minute"),
    MetricSpec("gauge", "quota_requests_today", "API requests today"),
    MetricSpec("gauge", "quota_tokens_current_minute", "API tokens in the current minute"),
    MetricSpec("gauge", "quota_tokens_today", "API tokens today"),
    MetricSpec("gauge", "quota_rpm_remaining", "API requests left in the current minute"),
    MetricSpec("gauge", "quota_tpm_remaining", "API tokens left in the current minute"),
    # -- cache ---------------------------------------------------------------------
    CACHE_OPERATIONS,
    MetricSpec("gauge", "cache_hit_rate", "Cache hit ratio of get operations since start (0-1)"),
    MetricSpec("gauge", "cache_size_bytes", "Cache size in bytes", ("layer",)),
    MetricSpec("gauge", "cache_items_count", "Items in the cache", ("layer",)),
    # -- circuit breakers -------------------------------------------------------------
    MetricSpec(
        "gauge",
        "circuit_breaker_state",
        "Circuit breaker state (0 closed, 1 half-open, 2 open)",
        ("service",),
        # Each worker has its own breaker: show the worst state among live workers.
        multiprocess_mode="livemax",
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_failures_total",
        "Calls through a circuit breaker that failed",
        ("service",),
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_successes_total",
        "Calls through a circuit breaker that succeeded",
        ("service",),
    ),
    # -- Gemini ----------------------------------------------------------------------
    MetricSpec(
        "counter",
        "gemini_api_calls_total",
        "Total Gemini API calls",
        ("endpoint", "model", "status"),
    ),
    MetricSpec(
        "histogram",
        "gemini_api_duration_seconds",
        "Gemini API call duration in seconds",
        ("endpoint", "model"),
        buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0),
    ),
    MetricSpec(
        "counter", "gemini_api_tokens_total", "Total Gemini API tokens", ("endpoint", "model")
    ),
    *DOMAIN_SPECS,
    # -- health ----------------------------------------------------------------------
    MetricSpec(
        "gauge",
        "concurrent_users",
        "Distinct users (logged-in user, session, token or client) seen in the last "
        "APPMETRICS_USERS_WINDOW_SECONDS",
        multiprocess_mode="max",
    ),
    # -- about the extension itself -------------------------------------------------------
    MetricSpec(
        "counter",
        "flask_appmetrics_internal_errors_total",
        "Failures inside flask-appmetrics itself, by component; the host request is unaffected",
        ("component",),
    ),
    MetricSpec(
        "gauge",
        "flask_appmetrics_info",
        "flask-appmetrics version serving these metrics (always 1)",
        ("version",),
        multiprocess_mode="max",
    ),
)


@dataclass(eq=False)
class MetricSet:
    """The collectors of one registry, by family name, plus per-registry state."""

    # Weak: the per-registry caches are WeakKeyDictionaries whose values are metric sets
    # (or hold one); a strong reference back to the key would keep every registry alive.
    _registry: weakref.ref[CollectorRegistry]
    buckets: tuple[float, ...]
    metrics: dict[str, Counter | Gauge | Histogram] = field(default_factory=dict)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry these collectors are registered in."""
        registry = self._registry()
        if registry is None:  # pragma: no cover - only reachable through a dead app's leftovers
            raise RuntimeError("the registry of this metric set no longer exists")
        return registry

    def counter(self, name: str) -> Counter:
        metric = self.metrics[name]
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str) -> Gauge:
        metric = self.metrics[name]
        assert isinstance(metric, Gauge)
        return metric

    def histogram(self, name: str) -> Histogram:
        metric = self.metrics[name]
        assert isinstance(metric, Histogram)
        return metric

    def count_internal_error(self, component: str) -> None:
        """Count a failure of the extension itself (``component`` is a fixed name of ours)."""
        self.counter("flask_appmetrics_internal_errors_total").labels(component).inc()


_sets: weakref.WeakKeyDictionary[CollectorRegistry, MetricSet] = weakref.WeakKeyDictionary()
_sets_lock = threading.Lock()


def metric_set_for(registry: CollectorRegistry, buckets: tuple[float, ...]) -> MetricSet:
    """Return the registry's metric set, building and registering it on first use.

    :raises MetricConflictError: a family name is taken by an incompatible collector.
    :raises ConfigurationError: the registry's set was built with other buckets.
    """
    with _sets_lock:
        existing = _sets.get(registry)
        if existing is not None:
            if existing.buckets != buckets:
                raise ConfigurationError(
                    "APPMETRICS_BUCKETS",
                    f"this registry's http_request_duration_seconds already has buckets "
                    f"{existing.buckets}; every app sharing a registry must use the same buckets",
                )
            return existing
        metric_set = _build(registry, buckets)
        _sets[registry] = metric_set
        return metric_set


def _duration_spec(buckets: tuple[float, ...]) -> MetricSpec:
    return MetricSpec(
        "histogram",
        "http_request_duration_seconds",
        "HTTP request duration in seconds, to the end of the response body",
        ("method", "endpoint"),
        buckets=buckets,
    )


def catalog_metric(
    registry: CollectorRegistry, name: str, *, buckets: tuple[float, ...]
) -> Counter | Gauge | Histogram:
    """The collector of the catalog family *name* in *registry*, in either order of setup.

    After ``init_app`` it is the collector the extension records into. Before, it is
    registered now from the catalog's definition (a histogram with *buckets*), and
    ``init_app`` adopts it later. Either way app code and the extension count into the same
    series, which a ``Counter(...)`` of the same name made after ``init_app`` cannot do:
    prometheus_client refuses it (``Duplicated timeseries``) in its own constructor.

    :raises UnknownMetricError: *name* is not a family of the catalog.
    :raises MetricConflictError: the name is taken by an incompatible collector.
    """
    with _sets_lock:
        metric_set = _sets.get(registry)
        if metric_set is not None and name in metric_set.metrics:
            return metric_set.metrics[name]
        specs = {spec.name: spec for spec in (*CATALOG, _duration_spec(buckets))}
        spec = specs.get(name)
        if spec is None:
            raise UnknownMetricError(name, sorted(specs))
        return declare(registry, spec)


def _build(registry: CollectorRegistry, buckets: tuple[float, ...]) -> MetricSet:
    duration = _duration_spec(buckets)
    specs = (*CATALOG[:1], duration, *CATALOG[1:])
    # All or nothing, so a conflict leaves no half-built set behind in the registry.
    metrics = declare_all(registry, specs)
    metric_set = MetricSet(weakref.ref(registry), buckets=buckets, metrics=metrics)
    _seed_known_series(metric_set)
    return metric_set


def _seed_known_series(metric_set: MetricSet) -> None:
    # Series the seed's expected output shows at 0 before anything happened.
    operations = metric_set.counter("cache_operations_total")
    for result in ("hit", "miss"):
        operations.labels(operation="get", result=result)
    metric_set.gauge("flask_appmetrics_info").labels(version=__version__).set(1)
    internal_errors = metric_set.counter("flask_appmetrics_internal_errors_total")
    for component in INTERNAL_ERROR_COMPONENTS:
        internal_errors.labels(component)
    hits = operations.labels(operation="get", result="hit")
    misses = operations.labels(operation="get", result="miss")

    def hit_rate() -> float:
        # Computed at scrape time from the counters, so it can never disagree with them.
        hit, miss = hits._value.get(), misses._value.get()
        total = hit + miss
        return hit / total if total else 0.0

    metric_set.gauge("cache_hit_rate").set_function(hit_rate)
