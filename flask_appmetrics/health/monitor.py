"""Application health: recent requests, user checks and circuit breakers, judged per app.

One :class:`HealthMonitor` per app, built by ``init_app`` and kept in the app's state. The
request instrumentation reports each finished request that counts for health (the
extension's own endpoints do not) to :meth:`HealthMonitor.observe`, and its request
context to :meth:`HealthMonitor.note_user`, which notes the user behind it. Both are O(1)
per request into bounded windows (:mod:`~flask_appmetrics.health.windows`). Health is judged when
asked:

* ``unhealthy``: the 5xx ratio over the error window reached
  ``APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO``, or a critical check failed;
* ``degraded``: the 5xx ratio reached ``APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO``, the p95
  latency of the last requests exceeds ``APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS``, a
  non-critical check failed, or a circuit breaker is open (``circuit_breaker_state`` 2);
* ``healthy`` otherwise.

The error ratio counts only once the window holds ``APPMETRICS_HEALTH_MIN_REQUESTS``
requests (20 by default): below that, a single failure on a quiet replica would be a ratio
of 1.0. ``recent_errors_5min`` is exact either way.

The report's ``scope`` says whose requests the error window and concurrent users count:
``process`` (this worker's: several workers each answer with their own) or ``shared`` (the
Redis windows of every worker and host, while Redis answers). Latency is always this
process's.

Errors are responses with a 5xx status (unhandled exceptions included): 4xx responses are
the client's mistakes, not signs of a sick app.

"Concurrent users" are the distinct identities that made a request in the last
``APPMETRICS_USERS_WINDOW_SECONDS``, at most ``APPMETRICS_USERS_MAX_TRACKED`` of them; see
:func:`~flask_appmetrics.recording.identity.default_user_identity` for what an identity is by
default.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flask import current_app, has_app_context

from ..app_state import latest, state_of
from ..metrics.catalog import BREAKER_STATE_NAMES
from ..metrics.registry_state import registry_state
from ..recording.identity import UserIdentity, default_user_identity, identity_of
from .checks import CheckFunc, CheckRegistry, CheckResult, CheckRunner, HealthCheck
from .windows import (
    BucketedCounter,
    Clock,
    LatencyRing,
    LatencyStats,
    LatencyWindow,
    RecentUsers,
    RequestCounts,
    RequestWindow,
    UserWindow,
)

if TYPE_CHECKING:
    from flask import Flask
    from flask.ctx import RequestContext
    from prometheus_client import Gauge

    from ..integrations.redis.link import RedisLink
    from ..metrics.catalog import MetricSet
    from ..settings import HealthSettings

logger = logging.getLogger(__name__)

Status = Literal["healthy", "degraded", "unhealthy"]
#: Whose requests the error window and concurrent users count: this process's, or every
#: process's and host's (the Redis-shared windows, while Redis answers).
Scope = Literal["process", "shared"]

_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True)
class HealthReport:
    """One evaluation of an app's health."""

    status: Status
    requests: RequestCounts
    latency: LatencyStats
    concurrent_users: int
    uptime_seconds: float
    checks: tuple[CheckResult, ...]
    #: Every circuit breaker of the app's registry, by service: closed, half_open or open.
    breakers: dict[str, str]
    #: Why the status is not ``healthy``, one line per cause.
    reasons: tuple[str, ...]
    #: What the error ratio alone says (per-measurement status of the IETF format).
    error_status: Status = "healthy"
    #: What the p95 latency alone says.
    latency_status: Status = "healthy"
    #: Whose requests the error window and concurrent users count; latency figures are
    #: always this process's.
    scope: Scope = "process"
    #: Requests the error window needs before its error ratio can change the status.
    min_requests: int = 0

    @property
    def http_status(self) -> int:
        """503 when unhealthy, else 200."""
        return 503 if self.status == "unhealthy" else 200

    def as_dict(self) -> dict[str, Any]:
        """The seed's JSON (its four keys first, unchanged) plus what an operator needs."""
        return {
            "status": self.status,
            "recent_errors_5min": self.requests.errors,
            "avg_response_time_ms": round(self.latency.average * 1000.0, 3),
            "concurrent_users": self.concurrent_users,
            "recent_requests_5min": self.requests.requests,
            "error_ratio_5min": round(self.requests.error_ratio, 6),
            "p95_response_time_ms": round(self.latency.p95 * 1000.0, 3),
            "max_response_time_ms": round(self.latency.maximum * 1000.0, 3),
            "latency_samples": self.latency.count,
            "error_window_seconds": self.requests.window_seconds,
            "uptime_seconds": round(self.uptime_seconds, 3),
            "checks": {result.name: result.as_dict() for result in self.checks},
            "circuit_breakers": dict(self.breakers),
            "reasons": list(self.reasons),
            "error_ratio_min_requests": self.min_requests,
            "scope": self.scope,
        }


class HealthMonitor:
    """The health windows, checks and judgement of one app.

    :param settings: the app's health settings.
    :param checks: the checks to run (live: checks registered later apply too), shared
        by every app of an extension; :meth:`add_check` adds checks of this app only.
    :param breaker_gauge: ``circuit_breaker_state``, read at evaluation time.
    :param clock: monotonic time source for the windows and uptime.
    :param user_identity: returns the current request's user identity.
    :param context: factory of the context checks run in (``app.app_context``).
    :param on_internal_error: told (with a component name) when recording fails.
    :param latency: replaces the in-process latency window (a shared one, say).
    :param requests: replaces the in-process request/error window.
    :param users: replaces the in-process users window.
    """

    def __init__(
        self,
        settings: HealthSettings,
        *,
        checks: CheckRegistry,
        breaker_gauge: Gauge | None = None,
        clock: Clock = time.monotonic,
        user_identity: UserIdentity | None = None,
        context: Callable[[], Any] | None = None,
        on_internal_error: Callable[[str], None] | None = None,
        latency: LatencyWindow | None = None,
        requests: RequestWindow | None = None,
        users: UserWindow | None = None,
    ) -> None:
        self.settings = settings
        self.checks = checks
        #: Checks of this app alone (its Redis link, say), run after :attr:`checks`; one
        #: of the same name replaces the shared check for this app.
        self.own_checks = CheckRegistry()
        self.clock = clock
        self.latency: LatencyWindow = latency or LatencyRing(settings.latency_window)
        self.requests: RequestWindow = requests or BucketedCounter(
            settings.error_window_seconds, clock=clock
        )
        self.users: UserWindow = users or RecentUsers(
            settings.users_window_seconds, max_tracked=settings.users_max_tracked, clock=clock
        )
        self.user_identity = user_identity or default_user_identity
        self._breakers = breaker_gauge
        self._runner = CheckRunner(settings.check_timeout_seconds, context=context)
        self._on_internal_error = on_internal_error
        self._started = clock()

    # -- recording (request path) ---------------------------------------------------------

    def observe(self, duration_seconds: float, status_code: int) -> None:
        """Record one finished request: the instrumentation's observer."""
        self.latency.record(duration_seconds)
        self.requests.record(status_code >= 500)

    def note_user(self, ctx: RequestContext) -> None:
        """Note the user of the request of *ctx* in the users window: the instrumentation's
        user observer, called once per request that counts for health."""
        try:
            if self.user_identity is default_user_identity:
                identity = identity_of(ctx)
            else:
                identity = self.user_identity()
            if identity is not None:
                self.users.touch(str(identity))
        except Exception:
            logger.exception("flask-appmetrics could not note the request's user")
            if self._on_internal_error is not None:
                self._on_internal_error("user_identity")

    # -- judgement ------------------------------------------------------------------------

    def add_check(
        self, name: str, func: CheckFunc, *, critical: bool = True, timeout: float | None = None
    ) -> HealthCheck:
        """Register *func* as the check *name* of this app only (``/api/health``,
        ``/readyz`` and :func:`get_health_status` run it with the shared checks).

        :raises TypeError: *func* is not callable or *name* not a string.
        :raises ValueError: *name* is empty or *timeout* is not a positive number.
        """
        return self.own_checks.add(name, func, critical=critical, timeout=timeout)

    def remove_check(self, name: str) -> None:
        """Unregister this app's check *name* (no error if absent)."""
        self.own_checks.remove(name)

    def all_checks(self) -> tuple[HealthCheck, ...]:
        """The shared checks then this app's own, one per name (the app's own wins)."""
        merged = {check.name: check for check in self.checks}
        for check in self.own_checks:
            merged.pop(check.name, None)
            merged[check.name] = check
        return tuple(merged.values())

    def run_checks(self) -> tuple[CheckResult, ...]:
        """Run every registered check (in parallel, each within its timeout)."""
        return self._runner.run(self.all_checks())

    def breaker_states(self) -> dict[str, str]:
        """Each circuit breaker's state, from the ``circuit_breaker_state`` gauge."""
        if self._breakers is None:
            return {}
        states: dict[str, str] = {}
        for family in self._breakers.collect():
            for sample in family.samples:
                service = sample.labels.get("service", "")
                states[service] = BREAKER_STATE_NAMES.get(sample.value, str(sample.value))
        return dict(sorted(states.items()))

    def evaluate(self) -> HealthReport:
        """Judge the app's health now: windows, checks and circuit breakers."""
        settings = self.settings
        counts = self.requests.counts()
        latency = self.latency.stats()
        checks = self.run_checks()
        breakers = self.breaker_states()
        status: Status = "healthy"
        reasons: list[str] = []

        def worsen(to: Status, reason: str) -> None:
            nonlocal status
            reasons.append(reason)
            if _RANK[to] > _RANK[status]:
                status = to

        ratio = counts.error_ratio
        error_status: Status = "healthy"
        # Too few requests to judge by: one failure must not decide a quiet replica's fate.
        judged = counts.requests > 0 and counts.requests >= settings.min_requests
        if judged and ratio >= settings.unhealthy_error_ratio:
            error_status = "unhealthy"
            worsen("unhealthy", f"error ratio {ratio:.3f} >= {settings.unhealthy_error_ratio:g}")
        elif judged and ratio >= settings.degraded_error_ratio:
            error_status = "degraded"
            worsen("degraded", f"error ratio {ratio:.3f} >= {settings.degraded_error_ratio:g}")
        latency_status: Status = "healthy"
        threshold = settings.latency_threshold_seconds
        if threshold is not None and latency.count and latency.p95 > threshold:
            latency_status = "degraded"
            worsen("degraded", f"p95 latency {latency.p95:.3f} s > {threshold:g} s")
        for result in checks:
            if not result.passed:
                level: Status = "unhealthy" if result.critical else "degraded"
                worsen(level, f"check {result.name!r} failed: {result.error}")
        for service, state in breakers.items():
            if state == "open":
                worsen("degraded", f"circuit breaker {service!r} is open")
        return HealthReport(
            scope=_scope_of(self.requests),
            min_requests=settings.min_requests,
            status=status,
            requests=counts,
            latency=latency,
            concurrent_users=self.users.count(),
            uptime_seconds=self.clock() - self._started,
            checks=checks,
            breakers=breakers,
            reasons=tuple(reasons),
            error_status=error_status,
            latency_status=latency_status,
        )


def _scope_of(window: RequestWindow) -> Scope:
    """Whether *window* last counted every process's requests (a Redis-shared window whose
    link is up) or this process's alone (in-process, or a shared one falling back)."""
    link = getattr(window, "link", None)
    return "shared" if link is not None and getattr(link, "available", False) else "process"


def build_monitor(
    app: Flask,
    settings: HealthSettings,
    metric_set: MetricSet,
    checks: CheckRegistry,
    *,
    user_identity: UserIdentity | None = None,
    requests: RequestWindow | None = None,
    users: UserWindow | None = None,
    redis: RedisLink | None = None,
) -> HealthMonitor:
    """The monitor ``init_app`` gives *app*, wired to the registry's metrics.

    :param requests: a shared request/error window (Redis) instead of the in-process one.
    :param users: a shared users window (Redis) instead of the in-process one.
    :param redis: the app's Redis link: adds the app's non-critical ``redis`` check,
        which fails (``degraded``) while the windows fall back to local ones.
    """
    monitor = HealthMonitor(
        settings,
        checks=checks,
        requests=requests,
        users=users,
        breaker_gauge=metric_set.gauge("circuit_breaker_state"),
        user_identity=user_identity,
        context=app.app_context,
        on_internal_error=metric_set.count_internal_error,
    )
    if redis is not None:
        monitor.add_check("redis", redis.check, critical=False)
    # concurrent_users sums the users windows of every live app on the registry.
    registry_state(metric_set.registry).count_users_of(monitor)
    return monitor


def _report(on_error: Callable[[str], None], component: str) -> None:
    try:
        on_error(component)
    except Exception:  # pragma: no cover - the counter itself failed
        logger.exception("flask-appmetrics could not count an internal error")


#: The seed's keys besides ``status``, when there is nothing to report.
_ZERO_SUMMARY: dict[str, Any] = {
    "recent_errors_5min": 0,
    "avg_response_time_ms": 0.0,
    "concurrent_users": 0,
}


def get_health_status() -> dict[str, Any]:
    """The health of the current app, as ``GET /api/health`` reports it.

    Inside an application context: that app's; outside one (a worker thread, a CLI job):
    the most recently initialised app's. Runs the registered checks, so it may take up to
    the longest check timeout. With no app initialised it warns (once per call site) and
    returns the seed's keys with ``"status": "unknown"``. Never raises: when the evaluation
    itself fails (a broken window) it logs, counts an internal error and returns
    ``"status": "unhealthy"`` with ``"error": "internal"`` beside the seed's keys at zero.
    """
    state = state_of(current_app) if has_app_context() else None
    if state is None:
        state = latest()
    if state is None or state.health is None:
        warnings.warn(
            "get_health_status(): no Flask app has been initialised with flask-appmetrics",
            RuntimeWarning,
            stacklevel=2,
        )
        return {"status": "unknown", **_ZERO_SUMMARY}
    try:
        return state.health.evaluate().as_dict()
    except Exception:
        logger.exception("flask-appmetrics failed to evaluate health for get_health_status()")
        _report(state.metric_set.count_internal_error, "health")
        return {"status": "unhealthy", "error": "internal", **_ZERO_SUMMARY}
