"""The metric catalog: every family flask-appmetrics exports, and the :class:`MetricSet`
that holds a registry's collectors of them.

Names and labels are the ones existing dashboards query; they are fixed here and nowhere
else. Which registry has which set (one per registry, built by the first ``init_app``) is
kept by :mod:`flask_appmetrics.metrics.registry_state`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .._version import __version__
from ..llm.conventions import GEN_AI_DURATION_BUCKETS, GEN_AI_TOKEN_BUCKETS, LLM_FAMILIES
from .registration import MetricSpec, declare_all

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
    # health, probes, the status page and the service level objectives
    "health",
    "readyz",
    "status_page",
    "concurrent_users",
    "redis",
    "slo",
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

#: ``status`` values of ``gemini_api_calls_total``: ``cancelled`` is a stream its consumer
#: closed before the end (or a task cancelled mid-call); only the first two are created at 0.
GEMINI_STATUSES = ("success", "error", "cancelled")
#: ``status`` values a recorded call may have: those of ``gemini_api_calls_total``, and
#: ``rejected``, a call a circuit breaker refused before it reached the API (counted in
#: ``gemini_api_rejected_calls_total`` only: it is no API call).
CALL_STATUSES = (*GEMINI_STATUSES, "rejected")
#: ``token_type`` values of ``gemini_api_token_usage_total``: ``input`` includes ``cached``
#: and ``output`` includes ``thoughts`` (OpenTelemetry's ``gen_ai.token.type`` meaning).
TOKEN_TYPES = ("input", "output", "thoughts", "cached")
#: Bucket boundaries of ``gemini_api_output_tokens_per_second``.
OUTPUT_SPEED_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
_GEN_AI_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)
#: ``limit`` values of ``quota_limit`` and ``quota_exceeded_total``.
QUOTA_LIMITS = ("rpm", "tpm", "rpd", "tpd")
#: ``circuit_breaker_state`` encoding; also the ``state`` label of transitions.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
#: The state each ``circuit_breaker_state`` value stands for.
BREAKER_STATE_NAMES = {float(value): name for name, value in BREAKER_STATES.items()}
#: The ``operation`` values of the cache families kept whatever the label cap.
CACHE_OPERATION_NAMES = ("get", "set", "delete")

CACHE_OPERATIONS = MetricSpec(
    "counter", "cache_operations_total", "Total cache operations", ("operation", "result")
)

#: The fixed part of the catalog. ``http_request_duration_seconds`` is added with the
#: configured buckets by :func:`catalog_specs`.
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
    # -- cache (hit rate and sizes, and the quota usage, are in SCRAPE_TIME_FAMILIES) ---
    CACHE_OPERATIONS,
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
    MetricSpec(
        "counter",
        "gemini_api_token_usage_total",
        "Gemini API tokens by type: input (prompt, cached included), output (answer, "
        "thoughts included), and the parts cached (served from the context cache) and "
        "thoughts (reasoning)",
        ("endpoint", "model", "token_type"),
    ),
    MetricSpec(
        "counter",
        "gemini_api_cost_usd_total",
        "Estimated Gemini API cost in USD, from APPMETRICS_GEMINI_PRICES",
        ("endpoint", "model"),
    ),
    MetricSpec(
        "counter",
        "gemini_api_errors_total",
        "Failed Gemini API calls by error_type: Google's status (RESOURCE_EXHAUSTED, "
        "INVALID_ARGUMENT, ...), an HTTP code, timeout, connection_error, invalid_response "
        "or _OTHER",
        ("endpoint", "model", "error_type"),
    ),
    MetricSpec(
        "counter",
        "gemini_api_finish_reasons_total",
        "Why Gemini stopped generating, one per candidate (STOP, MAX_TOKENS, SAFETY, ...; "
        "PROMPT_<reason> for a blocked prompt)",
        ("model", "finish_reason"),
    ),
    MetricSpec(
        "histogram",
        "gemini_api_time_to_first_chunk_seconds",
        "Seconds from a streamed call's request to its first chunk",
        ("endpoint", "model"),
        buckets=GEN_AI_DURATION_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "gemini_api_output_tokens_per_second",
        "Output tokens (reasoning included) per second of a completed stream, from its first "
        "chunk to its last",
        ("endpoint", "model"),
        buckets=OUTPUT_SPEED_BUCKETS,
    ),
    MetricSpec(
        "counter",
        "gemini_api_rejected_calls_total",
        "Gemini calls refused before reaching the API (an open circuit breaker); not in "
        "gemini_api_calls_total nor the quota",
        ("endpoint", "model"),
    ),
    MetricSpec(
        "counter",
        "gemini_api_unpriced_calls_total",
        "Gemini calls with tokens but no price in APPMETRICS_GEMINI_PRICES (their cost is "
        "not in gemini_api_cost_usd_total)",
        ("model",),
    ),
    # -- breakdowns: quota limits, breaker transitions, per-layer cache operations --
    MetricSpec(
        "gauge",
        "quota_limit",
        "Configured API quota limits (rpm, tpm, rpd, tpd); absent when unlimited",
        ("limit",),
        multiprocess_mode="livemax",
    ),
    MetricSpec(
        "counter",
        "quota_exceeded_total",
        "API usage records that went over a configured limit: requests over rpm/rpd, "
        "tokens over tpm/tpd",
        ("limit",),
    ),
    MetricSpec(
        "counter",
        "quota_refused_total",
        "API calls the provider refused for quota (HTTP 429 RESOURCE_EXHAUSTED), by model and "
        "the limit it named (rpm, tpm, rpd, tpd, or unknown)",
        ("model", "limit"),
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_transitions_total",
        "Circuit breaker state changes, by the state entered",
        ("service", "state"),
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_rejected_calls_total",
        "Calls a circuit breaker refused while open",
        ("service",),
    ),
    MetricSpec(
        "counter",
        "cache_layer_operations_total",
        "Cache operations reported with a layer, by layer, operation and result",
        ("layer", "operation", "result"),
    ),
    # -- OpenTelemetry GenAI client instruments (see llm.conventions) --------------------
    MetricSpec(
        "histogram",
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration)",
        (*_GEN_AI_LABELS, "error_type"),
        buckets=GEN_AI_DURATION_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "gen_ai_client_token_usage",
        "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage; "
        "input includes cached, output includes reasoning)",
        (*_GEN_AI_LABELS, "gen_ai_token_type"),
        buckets=GEN_AI_TOKEN_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "Time to receive the first chunk of a streamed call (OpenTelemetry "
        "gen_ai.client.operation.time_to_first_chunk)",
        _GEN_AI_LABELS,
        buckets=GEN_AI_DURATION_BUCKETS,
    ),
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
        multiprocess_mode="livemax",
    ),
)


@dataclass(frozen=True)
class ScrapeTimeFamily:
    """A gauge family whose samples are computed when the registry is collected.

    These are served by one collector per registry
    (:class:`~flask_appmetrics.metrics.scrape_time.ScrapeTimeGauges`), not by a ``Gauge``:
    a value that cannot be read (a cache whose size callable raised, a hit rate before any
    cache operation) is then left out instead of shown as a number.
    """

    name: str
    documentation: str
    labelnames: tuple[str, ...] = ()


#: The scrape-time gauges, in the order they are exposed.
SCRAPE_TIME_FAMILIES: tuple[ScrapeTimeFamily, ...] = (
    ScrapeTimeFamily("quota_requests_current_minute", "API requests in the current minute"),
    ScrapeTimeFamily("quota_requests_today", "API requests today"),
    ScrapeTimeFamily("quota_tokens_current_minute", "API tokens in the current minute"),
    ScrapeTimeFamily("quota_tokens_today", "API tokens today"),
    ScrapeTimeFamily("quota_rpm_remaining", "API requests left in the current minute"),
    ScrapeTimeFamily("quota_tpm_remaining", "API tokens left in the current minute"),
    ScrapeTimeFamily(
        "quota_learned_limit",
        "Quota limits learned from the API's 429 refusals, when no APPMETRICS_QUOTA_* limit is "
        "set: reported by the API, or observed (the model's traffic in the minute it was "
        "refused)",
        ("model", "limit", "source"),
    ),
    ScrapeTimeFamily(
        "gemini_api_daily_budget_usd",
        "Configured daily Gemini budget in USD (APPMETRICS_GEMINI_DAILY_BUDGET_USD); absent "
        "when none",
    ),
    ScrapeTimeFamily(
        "gemini_api_spend_today_usd",
        "Estimated Gemini spend today in USD (the quota's day, APPMETRICS_QUOTA_TIMEZONE)",
    ),
    ScrapeTimeFamily(
        "gemini_api_budget_remaining_usd",
        "Daily Gemini budget left today in USD (0 when spent; +Inf without a budget)",
    ),
    ScrapeTimeFamily(
        "cache_hit_rate",
        "Cache hit ratio of get operations since start (0-1); absent before the first",
    ),
    ScrapeTimeFamily("cache_size_bytes", "Cache size in bytes", ("layer",)),
    ScrapeTimeFamily("cache_items_count", "Items in the cache", ("layer",)),
)


#: The verdicts of ``app_health_status``, best first.
HEALTH_STATUSES = ("healthy", "degraded", "unhealthy")

#: The health families, computed at scrape time from the apps' health checks (their
#: cached results: a scrape runs only the checks whose result is stale, each within its
#: timeout) and verdicts. ``app_health_status`` is an enum (an OpenMetrics stateset): one
#: sample per verdict, 1 for the current one.
HEALTH_FAMILIES: tuple[ScrapeTimeFamily, ...] = (
    ScrapeTimeFamily(
        "health_check_up",
        "Whether the health check passed (1) or failed (0) at its last run",
        ("check",),
    ),
    ScrapeTimeFamily(
        "health_check_duration_seconds",
        "How long the health check's last run took, in seconds (its timeout when it timed out)",
        ("check",),
    ),
    ScrapeTimeFamily(
        "app_health_status",
        "The app's health verdict, as /api/health judges it: 1 for the current one",
        ("app_health_status",),
    ),
)


def hit_rate(hits: float, misses: float) -> float | None:
    """The share of get operations that hit; ``None`` before the first."""
    total = hits + misses
    return hits / total if total else None


@dataclass(eq=False)
class MetricSet:
    """The catalog's collectors in one registry, by family name."""

    # Weak: the registry's state holds its metric set, and is itself held by a
    # WeakKeyDictionary keyed by the registry; a strong reference back to the key would
    # keep every registry alive.
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

    def has(self, name: str) -> bool:
        """Whether the family *name* is registered (the LLM families can be turned off)."""
        return name in self.metrics

    def histogram(self, name: str) -> Histogram:
        metric = self.metrics[name]
        assert isinstance(metric, Histogram)
        return metric

    def count_internal_error(self, component: str) -> None:
        """Count a failure of the extension itself (``component`` is a fixed name of ours)."""
        self.counter("flask_appmetrics_internal_errors_total").labels(component).inc()


def duration_spec(buckets: tuple[float, ...]) -> MetricSpec:
    """``http_request_duration_seconds`` with *buckets*."""
    return MetricSpec(
        "histogram",
        "http_request_duration_seconds",
        "HTTP request duration in seconds, to the end of the response body",
        ("method", "endpoint"),
        buckets=buckets,
    )


def llm_family_set(name: str) -> str | None:
    """The set of :data:`LLM_FAMILIES` the family *name* belongs to, if any."""
    if name.startswith("gemini_api_"):
        return "gemini"
    if name.startswith("gen_ai_"):
        return "gen_ai"
    return None


def catalog_specs(
    buckets: tuple[float, ...], families: frozenset[str] | tuple[str, ...] = LLM_FAMILIES
) -> tuple[MetricSpec, ...]:
    """Every family of the catalog served by a prometheus_client metric, in page order,
    with the LLM families of the sets in *families* only."""
    specs = (*CATALOG[:1], duration_spec(buckets), *CATALOG[1:])
    return tuple(s for s in specs if llm_family_set(s.name) in (None, *families))


def build_metric_set(
    registry: CollectorRegistry,
    buckets: tuple[float, ...],
    families: frozenset[str] | tuple[str, ...] = LLM_FAMILIES,
) -> MetricSet:
    """Register (or adopt) every family of the catalog in *registry* (the LLM ones of the
    sets in *families*): all or none.

    :raises MetricConflictError: a family name is taken by an incompatible collector.
    """
    metrics = declare_all(registry, catalog_specs(buckets, families))
    metric_set = MetricSet(weakref.ref(registry), buckets=buckets, metrics=metrics)
    _create_known_series(metric_set)
    return metric_set


def _create_known_series(metric_set: MetricSet) -> None:
    # Series shown at 0 before anything happened: ``increase()`` only sees a rise from a
    # sample it already had.
    operations = metric_set.counter("cache_operations_total")
    for result in ("hit", "miss"):
        operations.labels(operation="get", result=result)
    metric_set.gauge("flask_appmetrics_info").labels(version=__version__).set(1)
    internal_errors = metric_set.counter("flask_appmetrics_internal_errors_total")
    for component in INTERNAL_ERROR_COMPONENTS:
        internal_errors.labels(component)
