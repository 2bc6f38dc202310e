"""Per-app state, stored in ``app.extensions["appmetrics"]``."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from .health.monitor import HealthMonitor
    from .integrations.redis.link import RedisLink
    from .metrics.catalog import MetricSet
    from .recording.receivers import DomainReceivers
    from .recording.request_hooks import RequestInstrumentation
    from .settings import Settings, StatusSettings
    from .web.guard import Guard

EXTENSION_KEY = "appmetrics"


@dataclass(eq=False)
class AppState:
    """Everything flask-appmetrics keeps for one app. Never stored on the extension object,
    so one :class:`~flask_appmetrics.FlaskMetrics` serves any number of apps."""

    app_name: str
    settings: Settings
    registry: CollectorRegistry
    metric_set: MetricSet
    instrumentation: RequestInstrumentation
    #: Own blueprints (metrics, health, probes), kept out of the health window.
    own_blueprints: frozenset[str] = frozenset()
    #: The app's health windows, checks and status evaluation.
    health: HealthMonitor | None = None
    #: Receivers of the domain signals (cache, Gemini, quota, breakers, business).
    domain: DomainReceivers | None = None
    #: Where the status page is served and how often it refreshes.
    status: StatusSettings | None = None

    #: Who may read /metrics and health details.
    auth: Guard | None = None
    #: The Redis link, when health and quota windows are shared (APPMETRICS_REDIS_URL).
    redis: RedisLink | None = None
    #: prometheus_client's multiprocess directory, when that mode is on (gunicorn workers).
    multiprocess_dir: str | None = None

    def scrape_registry(self) -> CollectorRegistry:
        """The registry ``/metrics`` serves: in multiprocess mode, a fresh one per scrape
        that sums every process's files (see :mod:`flask_appmetrics.metrics.multiprocess.setup`)."""
        if self.multiprocess_dir is not None:
            from .metrics.multiprocess.setup import derived_gauges, scrape_registry

            shared = self.redis is not None
            derived = derived_gauges(self.registry, shared_windows=shared)
            return scrape_registry(self.multiprocess_dir, derived)
        return self.registry


_latest: weakref.ref[AppState] | None = None
_latest_lock = threading.Lock()


def set_latest(state: AppState) -> None:
    """Remember *state* as the most recently initialised one (weakly: apps may be dropped)."""
    global _latest  # noqa: PLW0603 - one process-wide "most recent app" by design
    with _latest_lock:
        _latest = weakref.ref(state)


def latest() -> AppState | None:
    """The most recently initialised app's state, if that app still exists."""
    ref = _latest
    return ref() if ref is not None else None


def state_of(app: Flask) -> AppState | None:
    state = app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, AppState) else None
