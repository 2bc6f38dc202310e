"""Application health: recent requests, user checks and circuit breakers, judged per app.

Pure Python, like the windows and checks: no Flask, no metrics. One :class:`HealthMonitor`
per app, built by ``init_app`` (:func:`flask_appmetrics.health_wiring.build_monitor` hands it
the app's context, user identity and circuit breaker states) and kept in the app's state.
The request instrumentation reports each finished request that counts for health (the
extension's own endpoints do not) to :meth:`HealthMonitor.observe`, and its request
context to :meth:`HealthMonitor.note_user`, which notes the user behind it. Both are O(1)
per request into bounded windows (:mod:`~flask_appmetrics.health.windows`). Health is
judged when asked:

* ``unhealthy``: the 5xx ratio over the error window reached
  ``APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO``, or a critical check failed;
* ``degraded``: the 5xx ratio reached ``APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO``, the p95
  latency of the last requests exceeds ``APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS``, a
  non-critical check failed, or a circuit breaker is open (``circuit_breaker_state`` 2);
* ``healthy`` otherwise.

With service level objectives declared (:mod:`flask_appmetrics.slo`), the error budget
judges traffic instead of the fixed thresholds: ``degraded`` while an objective burns its
budget fast (the fast alert's condition: over 14.4 times the sustainable rate over both
the last hour and the last 5 minutes, for a 30-day period), and the two ``degraded`` rules
above on the error ratio and the p95 latency no longer apply. ``unhealthy`` on the error
ratio, the checks and the circuit breakers stand either way. Each objective's burn rates
and remaining budget are in the report (``objectives``).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import count_internal_error
from .checks import CheckFunc, CheckRegistry, CheckResult, CheckRunner, HealthCheck
from .draining import Drain, DrainFlag
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
    from ..settings import HealthSettings
    from ..slo.burn import ObjectiveStatus

logger = logging.getLogger(__name__)

Status = Literal["healthy", "degraded", "unhealthy"]
#: Whose requests the error window and concurrent users count: this process's, or every
#: process's and host's (the Redis-shared windows, while Redis answers).
Scope = Literal["process", "shared"]

_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
#: Identifies the user of a request from its request context: the identity to count, or
#: ``None`` not to count this request.
Identify = Callable[[Any], "str | None"]


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
    #: Each service level objective's burn rates and budget (none declared: empty).
    objectives: tuple[ObjectiveStatus, ...] = ()
    #: The drain in progress (the server was told to stop), if any.
    draining: Drain | None = None

    @property
    def http_status(self) -> int:
        """503 when unhealthy, else 200."""
        return 503 if self.status == "unhealthy" else 200

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``/api/health``: ``status``, ``recent_errors_5min``,
        ``avg_response_time_ms`` and ``concurrent_users`` first (the keys clients have
        always read), then what an operator needs; ``objectives`` when declared, and
        ``draining`` only while the server drains."""
        body: dict[str, Any] = {
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
        if self.objectives:
            body["objectives"] = [status.as_dict() for status in self.objectives]
        if self.draining is not None:
            body["draining"] = self.draining.as_dict()
        return body


class HealthMonitor:
    """The health windows, checks and judgement of one app.

    :param settings: the app's health settings.
    :param checks: the checks to run (live: checks registered later apply too), shared
        by every app of an extension; :meth:`add_check` adds checks of this app only.
    :param breakers: returns each circuit breaker's state by service (``closed``,
        ``half_open`` or ``open``), read at evaluation time.
    :param clock: monotonic time source for the windows and uptime.
    :param identify: the user identity of a request context, for :meth:`note_user`
        (without it, users are not counted).
    :param context: factory of the context checks run in (``app.app_context``).
    :param on_internal_error: told (with a component name) when recording fails.
    :param latency: replaces the in-process latency window (a shared one, say).
    :param requests: replaces the in-process request/error window.
    :param users: replaces the in-process users window.
    :param objectives: returns each service level objective's status (never raises);
        with any, the error budget judges traffic (see the module's docs).
    :param drain: the server's drain flag, read by :meth:`draining`.
    """

    def __init__(
        self,
        settings: HealthSettings,
        *,
        checks: CheckRegistry,
        breakers: Callable[[], Mapping[str, str]] | None = None,
        clock: Clock = time.monotonic,
        identify: Identify | None = None,
        context: Callable[[], Any] | None = None,
        on_internal_error: Callable[[str], None] | None = None,
        latency: LatencyWindow | None = None,
        requests: RequestWindow | None = None,
        users: UserWindow | None = None,
        objectives: Callable[[], tuple[ObjectiveStatus, ...]] | None = None,
        drain: DrainFlag | None = None,
    ) -> None:
        self.settings = settings
        self._objectives = objectives
        self.drain = drain
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
        self._identify = identify
        self._breakers = breakers
        self._runner = CheckRunner(
            settings.check_timeout_seconds,
            context=context,
            cache_seconds=settings.check_cache_seconds,
            failure_cache_seconds=settings.check_failure_cache_seconds,
            clock=clock,
        )
        self._on_internal_error = on_internal_error
        self._started = clock()

    # -- recording (request path) ---------------------------------------------------------

    def observe(self, duration_seconds: float, status_code: int) -> None:
        """Record one finished request: the instrumentation's observer."""
        self.latency.record(duration_seconds)
        self.requests.record(status_code >= 500)

    def note_user(self, ctx: object) -> None:
        """Note the user of the request of *ctx* (its request context) in the users
        window: the instrumentation's user observer, called once per request that counts
        for health."""
        if self._identify is None:
            return
        try:
            identity = self._identify(ctx)
            if identity is not None:
                self.users.touch(str(identity))
        except Exception:
            logger.exception("flask-appmetrics could not note the request's user")
            count_internal_error("user_identity", self._on_internal_error)

    # -- judgement ------------------------------------------------------------------------

    def add_check(
        self,
        name: str,
        func: CheckFunc,
        *,
        critical: bool = True,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        failure_cache_seconds: float | None = None,
    ) -> HealthCheck:
        """Register *func* as the check *name* of this app only (``/api/health``,
        ``/readyz`` and :func:`get_health_status` run it with the shared checks).

        :raises TypeError: *func* is not callable or *name* not a string.
        :raises ValueError: *name* is empty, *timeout* is not a positive number or a
            cache time is negative.
        """
        return self.own_checks.add(
            name,
            func,
            critical=critical,
            timeout=timeout,
            cache_seconds=cache_seconds,
            failure_cache_seconds=failure_cache_seconds,
        )

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
        """Every registered check's result: reused while fresh (its cache time), else run
        (in parallel, once however many callers ask, each within its timeout)."""
        return self._runner.run(self.all_checks())

    def draining(self) -> Drain | None:
        """The server's drain in progress, if it was told to stop."""
        return self.drain.current() if self.drain is not None else None

    def breaker_states(self) -> dict[str, str]:
        """Each circuit breaker's state, by service."""
        if self._breakers is None:
            return {}
        return dict(sorted(self._breakers().items()))

    def evaluate(self) -> HealthReport:
        """Judge the app's health now: windows, checks and circuit breakers."""
        settings = self.settings
        counts = self.requests.counts()
        latency = self.latency.stats()
        checks = self.run_checks()
        breakers = self.breaker_states()
        objectives = self._objectives() if self._objectives is not None else ()
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
        elif judged and ratio >= settings.degraded_error_ratio and not objectives:
            error_status = "degraded"
            worsen("degraded", f"error ratio {ratio:.3f} >= {settings.degraded_error_ratio:g}")
        latency_status: Status = "healthy"
        threshold = settings.latency_threshold_seconds
        if threshold is not None and latency.count and latency.p95 > threshold and not objectives:
            latency_status = "degraded"
            worsen("degraded", f"p95 latency {latency.p95:.3f} s > {threshold:g} s")
        for objective in objectives:
            if objective.fast_burn:
                worsen("degraded", objective.reason())
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
            objectives=objectives,
            draining=self.draining(),
        )


def _scope_of(window: RequestWindow) -> Scope:
    """Whether *window* last counted every process's requests (a Redis-shared window whose
    link is up) or this process's alone (in-process, or a shared one falling back)."""
    link = getattr(window, "link", None)
    return "shared" if link is not None and getattr(link, "available", False) else "process"
