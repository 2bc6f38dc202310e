"""The log of an app's requests, folded into the HTTP families and the health windows.

A request costs a few appends to :class:`collections.deque` objects instead of one locked
prometheus_client update per family plus the health windows' own locks: when it starts,
its route goes to the log of starts; when it ends, its duration goes to the log of its
route and status, and, if it counts for health, its end time (and again if it failed),
its duration and its user's sighting to the health logs. Floats and flat tuples only, so
the garbage collector has nothing to walk.

The logs are folded, under one lock, when something reads what they feed and when they
get long:

* before any HTTP family is collected
  (:class:`~flask_appmetrics.metrics.registry_state.PendingRecords`): a scrape sees every
  request that finished before it began;
* before the health windows are read (``HealthMonitor.sync``: ``/api/health``,
  ``/readyz``, the status page, ``get_health_status``, the ``concurrent_users`` gauge);
* when a route's log holds :data:`FOLD_SIZE` requests, or the last fold is
  :data:`FOLD_SECONDS` old: memory stays bounded with nobody reading, and windows shared
  through Redis hear from this process at least that often.

Folding is a handful of C loops per route and status (the count is the log's length, the
sum ``sum()``, the buckets a :class:`collections.Counter` of :func:`bisect.bisect_left`)
and one update per changed series; the health windows get the batch in one call each.

Exact whatever the threads: appending to and popping from a deque are atomic (one C call
under the GIL; a critical section per deque in free-threaded builds), the route and status
tables only grow (``dict.setdefault``, copied before they are walked), nothing on the
request path reads and then writes shared state, and only the fold, under its lock, takes
entries out: as many as a log held when the fold reached it. Ends are taken before starts,
and every request's start is logged before its end, so in-progress (starts minus ends) is
never below zero.

In multiprocess mode another process cannot fold this one's logs, and a request whose
response went out must be in this process's files even if it dies the next moment: the
HTTP families are written at once when a request starts and ends
(:meth:`~flask_appmetrics.metrics.route_series.RouteSeries.write_finished`), and only the
health windows are fed from the logs.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from ..metrics.route_series import RouteSeries
from .identity import identity_text

if TYPE_CHECKING:
    from ..metrics.catalog import MetricSet
    from ..metrics.value_writes import FileWrites

logger = logging.getLogger(__name__)

#: Requests a route's log (one per status) holds before a request folds the logs.
FOLD_SIZE = 1024
#: Seconds after the last fold a request folds the logs, whatever their length.
FOLD_SECONDS = 1.0

_popleft = deque.popleft
_when = itemgetter(1)


def _drain(log: deque[float]) -> list[float]:
    """The entries *log* holds now, taken out (appends meanwhile stay for the next time)."""
    return list(map(_popleft, repeat(log, len(log))))


class Route(RouteSeries):
    """The series of one (method, endpoint) pair, whether its requests count for health
    (the extension's own endpoints do not), and the durations of its requests not yet
    folded, by status."""

    __slots__ = ("in_window", "logs", "observed")

    def __init__(
        self,
        metric_set: MetricSet,
        method: str,
        endpoint: str,
        *,
        in_window: bool,
        writes: FileWrites | None = None,
    ) -> None:
        super().__init__(metric_set, method, endpoint, writes)
        self.in_window = in_window
        #: Whether the log's route observer wants this route's requests (an observer
        #: counting by route says so once, when the route is made).
        self.observed = True
        #: Durations of the requests answered with each status, oldest first.
        self.logs: dict[int, deque[float]] = {}


#: Told about each finished request that counts for health, with its labels:
#: ``(method, endpoint, duration_seconds, status_code)``.
RouteObserver = Callable[[str, str, float, int], None]


class HealthSink(Protocol):
    """Where the logs hand the requests that count for health (the app's health monitor)."""

    @property
    def latency_size(self) -> int:
        """How many of the latest durations the latency window keeps."""

    def observe_many(
        self,
        ended: Sequence[float],
        failed: Sequence[float],
        durations: Sequence[float],
        now: float,
    ) -> None: ...

    def note_users(self, sightings: Iterable[tuple[str, float]], now: float) -> None: ...


class RequestLog:
    """The requests of one app not yet in its metrics and health windows.

    :param health: where requests that count for health go (``None``: nowhere).
    :param writes: this process's file writes in multiprocess mode, where the HTTP
        families are written per request; ``None`` in-process.
    :param on_error: told (``"finish"``) when recording fails; the failure is logged.
    :param route_observer: told about each finished request that counts for health, as it
        finishes (the service level objectives, which count by route).
    :param fold_seconds: fold at least this often while requests come (at most
        :data:`FOLD_SECONDS`): a Redis link's flush interval, so that shared windows hear
        from this process as often as they did when each request was written to them.
    """

    __slots__ = (
        "__weakref__",
        "_due",
        "_ended",
        "_every",
        "_failed",
        "_latencies",
        "_lock",
        "_on_error",
        "_routes",
        "_starts",
        "_users",
        "_written",
        "finish",
        "health",
        "route_observer",
        "start",
    )

    def __init__(
        self,
        health: HealthSink | None,
        *,
        writes: FileWrites | None = None,
        on_error: Callable[[str], None] | None = None,
        route_observer: RouteObserver | None = None,
        fold_seconds: float = FOLD_SECONDS,
    ) -> None:
        self.health = health
        self.route_observer = route_observer
        self._on_error = on_error
        self._routes: list[Route] = []
        self._starts: deque[Route] = deque()
        # perf_counter() at the end of each request that counts for health, and again for
        # each one that failed (5xx).
        self._ended: deque[float] = deque()
        self._failed: deque[float] = deque()
        # Only the latest ones matter to the latency window: bounded by its size.
        size = health.latency_size if health is not None else 1
        self._latencies: deque[float] = deque(maxlen=max(size, 1))
        # (user identity or its key, perf_counter() at the end of the request)
        self._users: deque[tuple[Hashable, float]] = deque()
        self._lock = threading.Lock()
        self._every = min(fold_seconds, FOLD_SECONDS)
        # The first request folds: a shared window sends its first batch at once.
        self._due = 0.0
        self._written = writes is not None
        #: ``start(route)``: a request of *route* started.
        self.start: Callable[[Route], None]
        if writes is None:
            # The deque's own method: the cheapest call there is.
            self.start = self._starts.append
        else:
            self.start = RouteSeries.write_started
        #: ``finish(route, started, status, user, trace)``: a request of *route* ended now,
        #: with *status*; *started* is the ``perf_counter()`` of its start, *user* its
        #: user's identity (or a key of it, see :func:`~.identity.identity_key`), ``None``
        #: for none; *trace* its trace id or a header holding one, noted at once as the
        #: exemplar of its duration's bucket (``None``: none). Never raises.
        self.finish = self._finish

    def held(self) -> int:
        """How many entries the logs hold now (what folding would take out)."""
        routes = sum(
            len(log) for route in self._routes.copy() for log in route.logs.copy().values()
        )
        health = len(self._ended) + len(self._failed) + len(self._latencies) + len(self._users)
        return routes + len(self._starts) + health

    def add_route(self, route: Route) -> None:
        """Fold *route*'s logs from now on."""
        self._routes.append(route)

    def _finish(
        self,
        route: Route,
        started: float,
        status: int,
        user: Hashable | None,
        trace: str | None = None,
    ) -> None:
        try:
            end = perf_counter()
            duration = end - started
            if trace is not None:
                route.note_exemplar(trace, duration)
            log: deque[float] | None
            if self._written:
                route.write_finished(duration, status)
                # Only the health logs grow: bounded by the length of the ends.
                log = self._ended
            else:
                log = route.logs.get(status)
                if log is None:
                    log = route.logs.setdefault(status, deque())
                log.append(duration)
            if route.in_window:
                if route.observed:
                    observer = self.route_observer
                    if observer is not None:
                        observer(route.method, route.endpoint, duration, status)
                self._ended.append(end)
                if status >= 500:
                    self._failed.append(end)
                self._latencies.append(duration)
                if user is not None:
                    self._users.append((user, end))
            # The health logs grow no faster than the routes' logs together, and for no
            # longer than the fold interval.
            if len(log) >= FOLD_SIZE or end >= self._due:
                self.fold(wait=False)
        except Exception:
            self._failure()

    def fold(self, wait: bool = True) -> None:
        """Record every request logged so far into the metrics and the health windows.
        Never raises.

        :param wait: wait for a fold in progress in another thread, then fold (a reader
            must see everything finished before it asked); ``False`` (a request that found
            a log long): leave it to that fold.
        """
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._due = perf_counter() + self._every
            if not self._written:
                self._fold_families()
            self._fold_health()
        except Exception:
            self._failure()
        finally:
            self._lock.release()

    def _fold_families(self) -> None:
        ended: dict[Route, int] = {}
        for route in self._routes.copy():
            for status, log in route.logs.copy().items():
                if not log:
                    continue
                durations = _drain(log)
                count = len(durations)
                ended[route] = ended.get(route, 0) + count
                route.add_requests(status, count)
                buckets = Counter(map(bisect_left, repeat(route.bounds), durations))
                route.add_durations(sum(durations), buckets.items())
        # After the ends (see the module docstring).
        started = Counter(map(_popleft, repeat(self._starts, len(self._starts))))
        for route in started.keys() | ended.keys():
            delta = started[route] - ended.get(route, 0)
            if delta:
                route.add_in_progress(delta)

    def _fold_health(self) -> None:
        ended = _drain(self._ended)
        failed = _drain(self._failed)
        durations = _drain(self._latencies)
        users = list(map(_popleft, repeat(self._users, len(self._users))))
        now = perf_counter()  # after the drains: no entry ended later
        health = self.health
        if health is None:
            return
        # Users first, as they were noted first (at after_request): a shared window that
        # sends at most one batch per interval sends them before the counts.
        if users:
            # Each user's latest sighting (a dict keeps the last value of a key), oldest
            # first; keys made text once per user, not once per request.
            latest = sorted(dict(users).items(), key=_when)
            health.note_users([(identity_text(key), when) for key, when in latest], now)
        if ended or durations:
            health.observe_many(ended, failed, durations, now)

    def _failure(self) -> None:
        logger.exception("flask-appmetrics could not record a request; the request is unaffected")
        if self._on_error is not None:
            self._on_error("finish")
