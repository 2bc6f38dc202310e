"""Per-app state, stored in ``app.extensions["appmetrics"]``, and how module-level code
finds it: :func:`current_state`."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app, has_app_context

from .metrics.multiprocess.setup import derived_gauges, scrape_registry

if TYPE_CHECKING:
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from .health.monitor import HealthMonitor
    from .integrations.redis.link import RedisLink
    from .metrics.catalog import MetricSet
    from .recording.receivers import SignalReceivers
    from .recording.request_hooks import RequestInstrumentation
    from .settings import Settings
    from .slo.tracker import SloTracker
    from .web.guard import Guard
    from .web.status_page import StatusPage

EXTENSION_KEY = "appmetrics"


@dataclass(eq=False, frozen=True)
class AppState:
    """Everything flask-appmetrics keeps for one app. Never stored on the extension object,
    so one :class:`~flask_appmetrics.FlaskMetrics` serves any number of apps. The views do
    not read it: they get their pieces when their blueprints are built."""

    settings: Settings
    registry: CollectorRegistry
    metric_set: MetricSet
    instrumentation: RequestInstrumentation
    #: Own blueprints (metrics, health, status page), kept out of the health window.
    own_blueprints: frozenset[str]
    #: The app's health windows, checks and status evaluation.
    health: HealthMonitor
    #: The receivers of the app's signals (cache, Gemini, quota, breakers, business); they
    #: hold the app weakly.
    receivers: SignalReceivers
    #: The Redis link, when health and quota windows are shared (APPMETRICS_REDIS_URL).
    redis: RedisLink | None
    #: prometheus_client's multiprocess directory, when that mode is on (gunicorn workers).
    multiprocess_dir: str | None
    #: The app's service level objectives, their windows and burn rates.
    slo: SloTracker
    #: Who may read the extension's views (``flask appmetrics routes`` describes it).
    guard: Guard
    #: The status page, unless ``APPMETRICS_STATUS_PATH`` turns it off.
    status_page: StatusPage | None = None

    def scrape_registry(self) -> CollectorRegistry:
        """The registry ``/metrics`` serves: in multiprocess mode, a fresh one per scrape
        that sums every process's files (see :mod:`flask_appmetrics.metrics.multiprocess.setup`)."""
        if self.multiprocess_dir is not None:
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
    """*app*'s state, or ``None`` if flask-appmetrics was not initialised on it."""
    state = app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, AppState) else None


def current_state() -> AppState | None:
    """The state module-level code records into: this app, else the most recent one.

    Inside an application context: the current app's state, or ``None`` when
    flask-appmetrics was not initialised on that app (its metrics are not ours to record,
    and another app's would be the wrong ones). Outside any context (a worker thread, a
    CLI job, import time): the most recently initialised app's state, or ``None`` when
    no initialised app is alive. The helpers (:mod:`flask_appmetrics.helpers`) and the
    integrations call it; views never do, they are given what they need.
    """
    if has_app_context():
        # The proxy resolved once: each attribute read through it costs most of a
        # microsecond, and the helpers call this for every event they record.
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return state_of(app)
    return latest()


def strict_now() -> bool:
    """``APPMETRICS_STRICT`` of :func:`current_state`'s app (``False`` without one): what
    a registry's custom metrics follow when a call is refused."""
    state = current_state()
    return state is not None and state.settings.strict
