"""The log of an app's requests, folded into the HTTP families and the health windows.

A request costs two appends to a :class:`collections.deque` (one when it starts, one when
it ends) instead of one locked prometheus_client update per family and request plus the
health windows' own locks. The log is folded, under one lock, when something reads what it
feeds and when it gets long:

* before any HTTP family is collected
  (:class:`~flask_appmetrics.metrics.registry_state.PendingRecords`): a scrape sees every
  request that finished before it began;
* before the health windows are read (``HealthMonitor.sync``: ``/api/health``,
  ``/readyz``, the status page, ``get_health_status``, the ``concurrent_users`` gauge);
* when it holds :data:`FOLD_SIZE` finished requests, or its last fold is
  :data:`FOLD_SECONDS` old: memory stays bounded with nobody reading, and windows shared
  through Redis hear from this process at least that often.

Folding counts in plain Python, mostly in C loops (``map``, ``zip``,
:class:`collections.Counter`, :func:`bisect.bisect_left`): requests per (route, status),
durations per (route, bucket), their sum per route, starts minus ends per route, then
makes one update per changed series; the health windows get every request with its age
(seconds since it ended) and the users their latest sighting, one call each.

Exact whatever the threads: appending and popping a deque are atomic (one C call under the
GIL; a critical section per deque in free-threaded builds), nothing else is shared on the
request path, and only the fold, under its lock, takes entries out: it takes as many as the
log held when it began. Ends are taken before starts, and every request's start is appended
before its end, so in-progress (starts minus ends) is never below zero.

In multiprocess mode another process cannot fold this one's log, and a request whose
response went out must be in this process's files even if it dies the next moment: the
HTTP families are written at once when a request starts and ends
(:meth:`~flask_appmetrics.metrics.route_series.RouteSeries.write_finished`), and only the
health windows are fed from the log.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import attrgetter, itemgetter, le, sub
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from ..metrics.route_series import RouteSeries

if TYPE_CHECKING:
    from ..metrics.catalog import MetricSet
    from ..metrics.value_writes import FileWrites

logger = logging.getLogger(__name__)

#: Finished requests the log holds before a request folds it.
FOLD_SIZE = 1024
#: Seconds after its last fold a request folds the log, whatever its length.
FOLD_SECONDS = 1.0

_popleft = deque.popleft
_bounds = attrgetter("bounds")
_in_window = attrgetter("in_window")
_age = itemgetter(1)


class Route(RouteSeries):
    """The series of one (method, endpoint) pair, and whether its requests count for health
    (the extension's own endpoints do not)."""

    __slots__ = ("in_window",)

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


#: One finished request: its route, duration, status, ``perf_counter()`` at its end, and
#: its user's identity (``None``: not counted).
Finished = tuple[Route, float, int, float, "str | None"]


class HealthSink(Protocol):
    """Where the log hands requests that count for health (the app's health monitor)."""

    def observe_many(
        self, ages: Sequence[float], durations: Sequence[float], errors: Sequence[bool]
    ) -> None: ...

    def note_users(self, sightings: Iterable[tuple[str, float]]) -> None: ...


class RequestLog:
    """The requests of one app not yet in its metrics and health windows.

    :param health: where requests that count for health go (``None``: nowhere).
    :param writes: this process's file writes in multiprocess mode, where the HTTP
        families are written per request; ``None`` in-process.
    :param on_error: told (``"finish"``) when a fold fails; the failure is logged.
    """

    __slots__ = (
        "__weakref__",
        "_due",
        "_finished",
        "_lock",
        "_on_error",
        "_starts",
        "_written",
        "finish",
        "health",
        "start",
    )

    def __init__(
        self,
        health: HealthSink | None,
        *,
        writes: FileWrites | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.health = health
        self._on_error = on_error
        self._starts: deque[Route] = deque()
        self._finished: deque[Finished] = deque()
        self._lock = threading.Lock()
        self._due = perf_counter() + FOLD_SECONDS
        self._written = writes is not None
        #: ``start(route)``: a request of *route* started (its route just resolved).
        self.start: Callable[[Route], None]
        #: ``finish(route, started, status, user, trace)``: a request ended now; *started*
        #: is the ``perf_counter()`` of its start, *trace* its trace id or a header holding
        #: one (``None``: none), noted at once as the exemplar of its duration's bucket.
        self.finish: Callable[[Route, float, int, str | None, str | None], None]
        if writes is None:
            # The deque's own method: the cheapest call there is.
            self.start = self._starts.append
            self.finish = self._finish
        else:
            self.start = RouteSeries.write_started
            self.finish = self._finish_written

    def _finish(
        self, route: Route, started: float, status: int, user: str | None, trace: str | None
    ) -> None:
        end = perf_counter()
        finished = self._finished
        finished.append((route, end - started, status, end, user))
        if trace is not None:
            route.note_exemplar(trace, end - started)
        if len(finished) >= FOLD_SIZE or end >= self._due:
            self.fold(wait=False)

    def _finish_written(
        self, route: Route, started: float, status: int, user: str | None, trace: str | None
    ) -> None:
        end = perf_counter()
        duration = end - started
        route.write_finished(duration, status)
        if trace is not None:
            route.note_exemplar(trace, duration)
        if route.in_window and self.health is not None:
            finished = self._finished
            finished.append((route, duration, status, end, user))
            if len(finished) >= FOLD_SIZE or end >= self._due:
                self.fold(wait=False)

    def fold(self, wait: bool = True) -> None:
        """Record every request logged so far into the metrics and the health windows.

        :param wait: wait for a fold in progress in another thread, then fold (a reader
            must see everything finished before it asked); ``False`` (a request that found
            the log long): leave it to that fold.
        """
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._due = perf_counter() + FOLD_SECONDS
            # As many as there are now, ends before starts (see the module docstring).
            finished = self._finished
            entries = list(map(_popleft, repeat(finished, len(finished))))
            starts = self._starts
            started = Counter(map(_popleft, repeat(starts, len(starts))))
            if entries or started:
                self._fold(entries, started)
        except Exception:
            logger.exception("flask-appmetrics could not record the logged requests")
            if self._on_error is not None:
                self._on_error("finish")
        finally:
            self._lock.release()

    def _fold(self, entries: list[Finished], started: Counter[Route]) -> None:
        if entries:
            routes, durations, statuses, ends, users = zip(*entries, strict=True)
        else:
            routes = durations = statuses = ends = users = ()
        if not self._written:  # in-process: the families too
            _add_to_families(routes, durations, statuses, started)
        health = self.health
        if health is None or not entries:
            return
        counted = list(map(_in_window, routes))
        if not all(counted):
            durations = tuple(compress(durations, counted))
            statuses = tuple(compress(statuses, counted))
            ends = tuple(compress(ends, counted))
            users = tuple(compress(users, counted))
            if not durations:
                return
        now = perf_counter()
        ages = list(map(sub, repeat(now), ends))
        health.observe_many(ages, durations, list(map(le, repeat(500), statuses)))
        # The latest sighting of each user, oldest first.
        latest = dict(zip(users, ages, strict=True))
        latest.pop(None, None)
        if latest:
            health.note_users(sorted(latest.items(), key=_age, reverse=True))


def _add_to_families(
    routes: Sequence[Route],
    durations: Sequence[float],
    statuses: Sequence[int],
    started: Counter[Route],
) -> None:
    """One update per changed series for these finished requests and starts."""
    for (route, status), count in Counter(zip(routes, statuses, strict=True)).items():
        route.add_requests(status, count)
    per_route = Counter(routes)
    if per_route:
        buckets: dict[Route, list[tuple[int, int]]] = {route: [] for route in per_route}
        indexes = map(bisect_left, map(_bounds, routes), durations)
        for (route, index), count in Counter(zip(routes, indexes, strict=True)).items():
            buckets[route].append((index, count))
        if len(per_route) == 1:
            sums = {routes[0]: sum(durations)}
        else:
            sums = dict.fromkeys(per_route, 0.0)
            for route, duration in zip(routes, durations, strict=True):
                sums[route] += duration
        for route, pairs in buckets.items():
            route.add_durations(sums[route], pairs)
    for route in per_route.keys() | started.keys():
        delta = started[route] - per_route[route]
        if delta:
            route.add_in_progress(delta)
