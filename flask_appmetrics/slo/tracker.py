"""The objectives of one app: resolved against its routes, counted per request, judged.

One :class:`SloTracker` per app, built by ``init_app``. The request instrumentation hands
every finished request of the app's own routes to :meth:`SloTracker.observe` as
``(method, endpoint, duration_seconds, status)``; the health monitor reads
:meth:`SloTracker.statuses`.

Objectives are often declared after ``init_app`` (a view decorated below the extension's
creation, a blueprint registered later in the factory), so they are resolved against the
app's routes lazily: every time they are read until the app serves its first request, and
once more at that request, after which Flask refuses new routes and the resolution stays.
A declaration that cannot be used is logged once, naming it, and left out; ``flask
appmetrics check`` reports it as an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..errors import count_internal_error
from .burn import ObjectiveStatus, evaluate
from .objectives import Declaration, Objective
from .routes import Resolution, RouteSource, resolve
from .windows import Clock, ObjectiveWindow, SloWindow

logger = logging.getLogger(__name__)

#: Makes the window an objective's requests are counted in.
WindowFactory = Callable[[Objective], ObjectiveWindow]
#: What a request counts in: each objective's latency threshold (``None`` for
#: availability) and window.
_Entries = tuple[tuple["float | None", ObjectiveWindow], ...]


class SloTracker:
    """The objectives of one app and their windows.

    :param declarations: the declarations that apply to the app, read at resolution time
        (the extension's, which may grow, then the app's ``APPMETRICS_SLOS``).
    :param routes: the app's current routes and view functions.
    :param own_blueprints: the extension's blueprints, never counted.
    :param buckets: the boundaries of ``http_request_duration_seconds``.
    :param period_seconds: the objectives' rolling period.
    :param min_requests: requests the fast burn's long window needs to judge by.
    :param window_factory: makes each objective's window (default: an in-process
        :class:`~flask_appmetrics.slo.windows.SloWindow`).
    :param clock: monotonic time source (the in-process windows' and the uptime's).
    :param on_internal_error: told ``"slo"`` when reading the objectives fails.
    """

    def __init__(
        self,
        declarations: Callable[[], Sequence[Declaration]],
        routes: RouteSource,
        *,
        own_blueprints: frozenset[str],
        buckets: Sequence[float],
        period_seconds: float,
        min_requests: int,
        window_factory: WindowFactory | None = None,
        clock: Clock = time.monotonic,
        on_internal_error: Callable[[str], None] | None = None,
    ) -> None:
        self._declarations = declarations
        self._routes = routes
        self._own_blueprints = own_blueprints
        self.buckets = tuple(buckets)
        self.period_seconds = period_seconds
        self.min_requests = min_requests
        self._window_factory = window_factory or self._local_window
        self.clock = clock
        self._on_internal_error = on_internal_error
        self._started = clock()
        self._lock = threading.Lock()
        self._resolution: Resolution | None = None
        #: Set at the first request: the app's routes cannot change any more.
        self._final = False
        self._windows: dict[tuple[str, str], ObjectiveWindow] = {}
        #: The objectives a (method, endpoint) pair counts in, filled as pairs are seen:
        #: bounded by the method labels times the app's URL rules.
        self._by_route: dict[tuple[str, str], _Entries] = {}
        self._reported: set[str] = set()

    def _local_window(self, objective: Objective) -> ObjectiveWindow:
        return SloWindow(self.period_seconds, clock=self.clock)

    # -- resolution -----------------------------------------------------------------------

    def resolution(self) -> Resolution:
        """The objectives resolved against the app's routes as they are now (kept once the
        app has served a request)."""
        with self._lock:
            return self._resolve()

    def _resolve(self) -> Resolution:
        if self._resolution is not None and self._final:
            return self._resolution
        routes, views = self._routes()
        resolution = resolve(
            self._declarations(),
            routes,
            views,
            own_blueprints=self._own_blueprints,
            buckets=self.buckets,
        )
        for problem in resolution.problems:
            if problem not in self._reported:
                self._reported.add(problem)
                logger.error("flask-appmetrics: objective left out: %s", problem)
        self._resolution = resolution
        return resolution

    def invalidate(self) -> None:
        """Resolve again at the next read: a declaration was added to the extension."""
        with self._lock:
            self._resolution = None
            self._final = False
            self._by_route = {}

    def _window(self, objective: Objective) -> ObjectiveWindow:
        # Kept by name and indicator across resolutions: a later resolution of the same
        # objective keeps counting in the same window (caller holds the lock).
        key = (objective.name, objective.sli)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = self._window_factory(objective)
        return window

    # -- the request path -----------------------------------------------------------------

    def observe(self, method: str, endpoint: str, duration_seconds: float, status: int) -> None:
        """Count one finished request of the app's routes in the objectives that cover it."""
        entries = self._by_route.get((method, endpoint))
        if entries is None:
            entries = self._entries(method, endpoint)
        # Objective.is_bad, inlined: this runs for every request of every objective.
        for threshold, window in entries:
            window.record(status >= 500 if threshold is None else duration_seconds > threshold)

    def covers(self, method: str, endpoint: str) -> bool:
        """Whether any objective counts the requests of (*method*, *endpoint*): asked once
        per route as the app serves it, so that a route no objective covers costs its
        requests no :meth:`observe` call."""
        entries = self._by_route.get((method, endpoint))
        if entries is None:
            entries = self._entries(method, endpoint)
        return bool(entries)

    def _entries(self, method: str, endpoint: str) -> _Entries:
        with self._lock:
            if not self._final:
                # A request has been served: Flask accepts no new route now.
                self._final = True
                self._resolution = None
                self._by_route = {}
            try:
                resolution = self._resolve()
                entries = tuple(
                    (r.objective.threshold_seconds, self._window(r.objective))
                    for r in resolution.objectives
                    if r.selection.matches(method, endpoint)
                )
            except Exception:
                # Counted nowhere rather than failing again on every request of the route.
                logger.exception(
                    "flask-appmetrics could not resolve the objectives of %s %s", method, endpoint
                )
                count_internal_error("slo", self._on_internal_error)
                entries = ()
            self._by_route[(method, endpoint)] = entries
            return entries

    # -- judgement ------------------------------------------------------------------------

    def statuses(self) -> tuple[ObjectiveStatus, ...]:
        """Each objective's burn rates and budget now (empty without objectives)."""
        with self._lock:
            resolution = self._resolve()
            pairs = [(r.objective, self._window(r.objective)) for r in resolution.objectives]
        observed = self.clock() - self._started
        return tuple(
            evaluate(
                objective,
                window,
                period_seconds=self.period_seconds,
                observed_seconds=observed,
                min_requests=self.min_requests,
            )
            for objective, window in pairs
        )

    def safe_statuses(self) -> tuple[ObjectiveStatus, ...]:
        """:meth:`statuses`, or none when reading them fails (logged and counted): health
        is then judged as without objectives."""
        try:
            return self.statuses()
        except Exception:
            logger.exception("flask-appmetrics could not read the service level objectives")
            count_internal_error("slo", self._on_internal_error)
            return ()
