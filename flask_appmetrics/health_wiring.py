"""An app's :class:`~flask_appmetrics.health.monitor.HealthMonitor`, wired to Flask and to
its registry's metrics.

:mod:`flask_appmetrics.health` is pure Python: it neither imports Flask nor reads
metrics. This module gives the monitor ``init_app`` builds what it needs from both: the
app's context for the checks, the request's user identity, the circuit breaker states
from the ``circuit_breaker_state`` gauge, and the ``concurrent_users`` gauge computed from
the users windows of every app sharing the registry (counted by the registry's state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .health.draining import PROCESS_DRAIN
from .health.monitor import HealthMonitor, Identify
from .metrics.catalog import BREAKER_STATE_NAMES
from .metrics.registry_state import registry_state
from .recording.identity import UserIdentity, default_user_identity, identity_of

if TYPE_CHECKING:
    from flask import Flask
    from prometheus_client import Gauge

    from .health.checks import CheckRegistry
    from .health.windows import RequestWindow, UserWindow
    from .integrations.redis.link import RedisLink
    from .metrics.catalog import MetricSet
    from .settings import HealthSettings
    from .slo.burn import ObjectiveStatus

logger = logging.getLogger(__name__)


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
    objectives: Callable[[], tuple[ObjectiveStatus, ...]] | None = None,
) -> HealthMonitor:
    """The monitor ``init_app`` gives *app*, wired to the registry's metrics.

    :param user_identity: returns the current request's user identity (default:
        :func:`~flask_appmetrics.recording.identity.default_user_identity`).
    :param requests: a shared request/error window (Redis) instead of the in-process one.
    :param users: a shared users window (Redis) instead of the in-process one.
    :param redis: the app's Redis link: adds the app's non-critical ``redis`` check,
        which fails (``degraded``) while the windows fall back to local ones.
    :param objectives: the app's service level objectives' statuses (its SLO tracker).
    """
    monitor = HealthMonitor(
        settings,
        checks=checks,
        requests=requests,
        users=users,
        breakers=_breaker_states(metric_set.gauge("circuit_breaker_state")),
        identify=_identify(user_identity),
        context=app.app_context,
        on_internal_error=metric_set.count_internal_error,
        drain=PROCESS_DRAIN,
        objectives=objectives,
    )
    if redis is not None:
        # Not reused: it says whether the windows are shared right now, which a request
        # can change at any time, and a ping costs less than a stale verdict.
        monitor.add_check(
            "redis", redis.check, critical=False, cache_seconds=0, failure_cache_seconds=0
        )
    # concurrent_users sums the users windows of every live app on the registry; the
    # health families show the checks and verdicts of every live app on it.
    state = registry_state(metric_set.registry)
    state.count_users_of(monitor)
    state.report_health_of(monitor)
    return monitor


def _identify(user_identity: UserIdentity | None) -> Identify:
    """The monitor's identity of a request context: the default one reads the context the
    instrumentation already resolved (each context-local lookup costs most of a
    microsecond, on every request); a user's function reads the request itself."""
    if user_identity is None or user_identity is default_user_identity:
        return identity_of

    def identify(ctx: Any) -> str | None:
        return user_identity()

    return identify


def _breaker_states(gauge: Gauge) -> Callable[[], dict[str, str]]:
    """Each circuit breaker's state by service, read from ``circuit_breaker_state``."""

    def states() -> dict[str, str]:
        found: dict[str, str] = {}
        for family in gauge.collect():
            for sample in family.samples:
                service = sample.labels.get("service", "")
                found[service] = BREAKER_STATE_NAMES.get(sample.value, str(sample.value))
        return found

    return states
