"""The settings ``init_app`` reads, one frozen class per concern.

Plain values only: :mod:`flask_appmetrics.config` fills them from ``app.config`` (and
validates them); the modules of each concern read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .llm.pricing import ModelPrice
    from .llm.quota import QuotaLimits
    from .slo.objectives import Declaration


@dataclass(frozen=True)
class HttpSettings:
    """How requests are measured."""

    #: Histogram buckets of ``http_request_duration_seconds``, increasing, in seconds.
    buckets: tuple[float, ...]
    #: Requests to these paths, or below them by whole path segments, are not recorded.
    exclude_paths: tuple[str, ...]
    #: Distinct ``error_type`` values kept before the rest are counted as ``other``.
    max_error_types: int


@dataclass(frozen=True)
class EndpointSettings:
    """Where the extension's own views are served; ``None`` turns one off."""

    metrics_path: str | None
    health_path: str | None
    livez_path: str | None
    readyz_path: str | None


#: Values of ``APPMETRICS_AUTH_HEALTH``: what health needs credentials for.
AUTH_HEALTH_MODES = ("details", "all", "none")


@dataclass(frozen=True)
class AuthSettings:
    """Credentials ``/metrics`` and health details require (keys ``APPMETRICS_AUTH_*``).

    With no token, no username and no ``auth=`` decorator, everything stays public.
    """

    #: ``Authorization: Bearer <token>`` is accepted (compared in constant time).
    token: str | None
    #: ``Authorization: Basic`` with this user and password is accepted.
    username: str | None
    password: str | None
    #: ``details``: the health summary stays public, details need credentials; ``all``:
    #: ``/api/health`` and ``/readyz`` need them; ``none``: health is public.
    health: str

    @property
    def configured(self) -> bool:
        return self.token is not None or self.username is not None


@dataclass(frozen=True)
class SentrySettings:
    """Sentry error tracking (keys ``APPMETRICS_SENTRY_*``; ``SENTRY_*`` env as fallback)."""

    #: ``None`` (or ``""``) leaves Sentry alone.
    dsn: str | None
    environment: str
    release: str | None
    #: Extra keyword arguments for ``sentry_sdk.init`` (``traces_sample_rate``, ...).
    options: Mapping[str, Any]
    #: Field names scrubbed from events besides the built-in list.
    scrub_fields: tuple[str, ...]


@dataclass(frozen=True)
class RedisSettings:
    """Windows shared by all workers and hosts (keys ``APPMETRICS_REDIS_*``)."""

    #: ``redis://`` URL; ``None`` keeps every window in process memory.
    url: str | None
    #: Prefix of every key, so several apps can share one Redis; ``{app_name}`` in it is
    #: replaced by the Flask app's name (the default is ``appmetrics:{app_name}``).
    prefix: str
    #: Connect and read timeout: the most a request can wait for Redis.
    socket_timeout: float
    #: After a failure, local windows are used for this long before Redis is tried again.
    retry_seconds: float
    #: Health and users window updates are sent in one batch at most this often per
    #: process (``0``: on every request). The quota is always updated at once.
    flush_seconds: float = 1.0


@dataclass(frozen=True)
class HealthSettings:
    """How ``/api/health`` judges the app (keys ``APPMETRICS_HEALTH_*``, ``APPMETRICS_USERS_*``).

    Why the defaults:

    * ``latency_window`` 100: enough samples for a
      meaningful p95 (the 5 slowest), small enough to follow a change within seconds.
    * ``error_window_seconds`` 300: the span of the health summary's ``recent_errors_5min``.
    * ``degraded_error_ratio`` 0.05: one request in twenty failing with a 5xx is far beyond
      any usual availability objective (99.9% allows 0.1%) and worth a human's look, while
      the odd failure among a few requests does not flap the status.
    * ``unhealthy_error_ratio`` 0.5: when most requests fail the instance is not doing its
      job; 100% errors over the window is always unhealthy.
    * ``latency_threshold_seconds`` 5.0 (p95; ``None`` disables): an app calling Gemini waits on
      generations that take seconds, so a lower default would report a normal
      LLM backend as degraded; a p95 above 5 s (the histogram's 5 s bucket) means most
      users wait noticeably whatever the backend.
    * ``check_timeout_seconds`` 0.5: checks run in parallel, so a probe answers within
      about this time even when a check hangs: inside Kubernetes' default 1 s probe timeout.
    * ``check_cache_seconds`` 5.0: a passing check is run again at most every 5 seconds,
      so load balancers, Kubernetes probes, scrapes and status pages asking many times a
      second cost the database one query per 5 seconds per process; a dependency that goes
      down shows within 5 seconds, quicker than the usual probe period times its failure
      threshold.
    * ``check_failure_cache_seconds`` 1.0: a failure is reused for less time, so that a
      recovery shows within a second, while a dependency that is down (and may time out)
      is still not hammered by every probe.
    * ``drain_seconds`` 0: on SIGTERM the server stops at once, as servers do; set it to
      the time your load balancer takes to notice a failing ``/readyz`` (Kubernetes: the
      readiness probe's period times its failure threshold).
    * ``users_window_seconds`` 300 and ``users_max_tracked`` 10,000: "concurrent users" are
      the distinct identities seen in the last 5 minutes (the error window's span); 10,000
      entries of 8-byte digests cost about 1 MiB at most.
    * ``min_requests`` 20: the error ratio judges the app only once the error window holds
      at least this many requests. On a quiet replica one failing request is a ratio of
      1.0, and anyone able to trigger a 500 could take it out of a load balancer for the
      window's length; 20 requests is the smallest sample in which the default degraded
      ratio (0.05) is one whole error.
    """

    latency_window: int
    error_window_seconds: float
    degraded_error_ratio: float
    unhealthy_error_ratio: float
    latency_threshold_seconds: float | None
    check_timeout_seconds: float
    users_window_seconds: float
    users_max_tracked: int
    #: Requests the error window must hold before the error ratio can change the status.
    min_requests: int = 20
    #: Seconds a passing check's result is reused (0: checks run on every probe).
    check_cache_seconds: float = 0.0
    #: Seconds a failing check's result is reused.
    check_failure_cache_seconds: float = 0.0
    #: Seconds the server keeps serving after SIGTERM while ``/readyz`` answers 503.
    drain_seconds: float = 0.0


@dataclass(frozen=True)
class SharedSettings:
    """The settings every app on one registry shares, as they shape its series: Gemini
    labels and prices, the quota, input-fed labels (keys ``APPMETRICS_GEMINI_*``,
    ``APPMETRICS_QUOTA_*``, ``APPMETRICS_MAX_LABEL_VALUES``, ``APPMETRICS_MAX_LABEL_LENGTH``;
    see :mod:`flask_appmetrics.metrics.registry_state`)."""

    #: Endpoint and model label values created at 0 at start, and always kept as they are.
    gemini_endpoints: tuple[str, ...]
    gemini_models: tuple[str, ...]
    #: USD per million tokens by model-name prefix (see :mod:`flask_appmetrics.llm.pricing`).
    gemini_prices: Mapping[str, ModelPrice]
    #: Distinct values each label fed from input (Gemini endpoint and model, cache operation
    #: and layer, breaker service) keeps besides the configured ones; then ``other``.
    max_label_values: int
    #: UTF-8 bytes a label value fed from input may hold; a longer one is truncated and
    #: given a hash suffix (see :func:`flask_appmetrics.metrics.labels.cap_length`).
    max_label_length: int
    #: RPM, TPM, RPD and TPD limits; ``None`` is unlimited.
    quota_limits: QuotaLimits
    #: IANA time zone whose midnight starts a new quota day (and budget day).
    quota_timezone: str
    #: Daily LLM budget in USD; ``None`` for none (``gemini_api_budget_remaining_usd`` is
    #: then +Inf).
    gemini_daily_budget: float | None = None
    #: The LLM family sets registered: ``gemini`` (``gemini_api_*``) and ``gen_ai``
    #: (OpenTelemetry's ``gen_ai_*``).
    llm_families: frozenset[str] = frozenset(("gemini", "gen_ai"))


@dataclass(frozen=True)
class LlmSettings:
    """How an app's LLM calls are labelled (keys ``APPMETRICS_GEMINI_*``)."""

    #: ``endpoint`` of an instrumented client's calls made outside any request (a worker
    #: thread, a CLI command); inside one, the request's URL rule.
    default_endpoint: str = "<background>"


@dataclass(frozen=True)
class StatusSettings:
    """The HTML status page: where it is served (``None``: nowhere), how often it refreshes."""

    path: str | None
    refresh_seconds: float


@dataclass(frozen=True)
class SloSettings:
    """Service level objectives declared in config (``APPMETRICS_SLOS``) and the rolling
    period every objective of the app is judged over (``APPMETRICS_SLO_WINDOW_DAYS``)."""

    declarations: tuple[Declaration, ...]
    period_seconds: float


@dataclass(frozen=True)
class Settings:
    """Everything ``init_app`` read from ``app.config``."""

    http: HttpSettings
    endpoints: EndpointSettings
    #: Who may read ``/metrics`` and health details.
    auth: AuthSettings
    #: Sentry error tracking.
    sentry: SentrySettings
    #: Shared windows in Redis.
    redis: RedisSettings
    #: Raise on bad input to helpers and signals instead of logging it.
    strict: bool
    #: How the health endpoint judges the app.
    health: HealthSettings
    #: Gemini, quota and input-fed label settings, shared by the apps on a registry.
    shared: SharedSettings
    #: The HTML status page.
    status: StatusSettings
    #: Service level objectives.
    slo: SloSettings
    #: LLM call labelling.
    llm: LlmSettings = LlmSettings()
