"""Good and bad request counts of one objective, over the windows its burn rates need.

Pure Python, clock injectable. A burn rate compares the bad share of a window with the
objective's budget, and the alerting method needs windows from 5 minutes to the whole
objective period (30 days by default). One ring of time buckets cannot serve both ends, so
:class:`SloWindow` keeps three rings of :data:`RING_BUCKETS` buckets each:

* 1 hour in 15 s buckets (the 5 m, 30 m and 1 h windows);
* 6 hours in 90 s buckets (the 6 h window);
* the objective period in ``period / 240`` buckets (3 h for 30 days: the 3 d window and
  the error budget).

A window of *w* seconds is read from the finest ring that spans it, as the last
``round(w / width)`` buckets: it covers between ``w - width`` and ``w`` of history (the
current bucket is partly elapsed), counts within it exact. Memory is fixed per objective
(three rings of 240 buckets of three 8-byte integers: about 17 KiB) whatever the traffic
and however long the process lives; recording is three bucket updates under one lock.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: A clock in seconds (monotonic in process; wall-clock where hosts must agree).
Clock = Callable[[], float]
#: Whose requests a window counts: this process's, or every process's (Redis).
WindowScope = Literal["process", "shared"]

#: Buckets per ring: the resolution at which old counts leave each window (1/240).
RING_BUCKETS = 240
#: The spans of the two fine rings, in seconds; the third spans the objective period.
FINE_SPANS = (3600.0, 21_600.0)


@dataclass(frozen=True)
class WindowCounts:
    """Requests and bad requests over one window."""

    requests: int
    bad: int
    #: The window's span in seconds.
    seconds: float

    @property
    def bad_ratio(self) -> float:
        """``bad / requests``, ``0.0`` without requests."""
        return self.bad / self.requests if self.requests else 0.0


@runtime_checkable
class ObjectiveWindow(Protocol):
    """Where an objective's requests are counted (this process's :class:`SloWindow`, or a
    window shared through Redis)."""

    @property
    def scope(self) -> WindowScope:
        """Whose requests the last read counted."""

    def record(self, bad: bool) -> None:
        """Count one finished request, bad or good. O(1); called on the request path."""

    def counts(self, seconds: float) -> WindowCounts:
        """Requests and bad ones over the last *seconds* (at most the period)."""


class Ring:
    """*buckets* time buckets of *width* seconds: requests and bad requests per bucket,
    each bucket stamped with the interval it holds and reset when time comes round."""

    __slots__ = ("bad", "buckets", "requests", "stamps", "width")

    def __init__(self, span: float, buckets: int = RING_BUCKETS) -> None:
        self.buckets = buckets
        self.width = span / buckets
        self.stamps = array("q", [-1]) * buckets
        self.requests = array("q", [0]) * buckets
        self.bad = array("q", [0]) * buckets

    @property
    def span(self) -> float:
        return self.width * self.buckets

    def add(self, interval: int, requests: int, bad: int) -> None:
        """Add counts to the bucket of *interval* (caller holds the lock)."""
        slot = interval % self.buckets
        if self.stamps[slot] != interval:
            self.stamps[slot] = interval
            self.requests[slot] = 0
            self.bad[slot] = 0
        self.requests[slot] += requests
        self.bad[slot] += bad

    def sum(self, now: float, seconds: float) -> tuple[int, int]:
        """Requests and bad requests of the buckets within the last *seconds* (caller
        holds the lock)."""
        interval = int(now // self.width)
        oldest = interval - max(1, min(self.buckets, round(seconds / self.width))) + 1
        requests = bad = 0
        for slot, stamp in enumerate(self.stamps):
            if oldest <= stamp <= interval:
                requests += self.requests[slot]
                bad += self.bad[slot]
        return requests, bad


def ring_spans(period_seconds: float) -> tuple[float, ...]:
    """The spans of the rings of an objective with this period, finest first."""
    return (*(s for s in FINE_SPANS if s < period_seconds), period_seconds)


def ring_for(spans: tuple[float, ...], seconds: float) -> int:
    """The index of the finest ring that spans *seconds* (the last one if none does)."""
    for index, span in enumerate(spans):
        if seconds <= span:
            return index
    return len(spans) - 1


class SloWindow:
    """One objective's requests in this process, over every window up to its period.

    A request only adds to two pending counts of the current fine bucket (15 s); they go
    into the three rings when time moves to the next bucket, or when the window is read.
    So recording costs a clock read and two additions, and the rings are touched at most
    once per bucket.

    :param period_seconds: the objective period (``APPMETRICS_SLO_WINDOW_DAYS``).
    :param clock: time source in seconds.
    """

    __slots__ = (
        "_bad",
        "_fine_width",
        "_interval",
        "_lock",
        "_requests",
        "_rings",
        "clock",
        "period_seconds",
    )

    def __init__(self, period_seconds: float, *, clock: Clock = time.monotonic) -> None:
        if not period_seconds > 0:
            raise ValueError(f"period_seconds must be positive, got {period_seconds}")
        self.period_seconds = period_seconds
        self.clock = clock
        self._rings = tuple(Ring(span) for span in ring_spans(period_seconds))
        self._fine_width = self._rings[0].width
        #: The fine bucket the pending counts belong to, and the counts.
        self._interval = -1
        self._requests = 0
        self._bad = 0
        self._lock = threading.Lock()

    @property
    def scope(self) -> WindowScope:
        return "process"

    @property
    def rings(self) -> tuple[Ring, ...]:
        return self._rings

    def record(self, bad: bool) -> None:
        interval = int(self.clock() // self._fine_width)
        with self._lock:
            if interval != self._interval:
                self._settle()
                self._interval = interval
            self._requests += 1
            if bad:
                self._bad += 1

    def _settle(self) -> None:
        """Move the pending counts into the rings, each at the bucket holding the start of
        their fine bucket (caller holds the lock)."""
        if not self._requests:
            return
        start = self._interval * self._fine_width
        for ring in self._rings:
            ring.add(int(start // ring.width), self._requests, self._bad)
        self._requests = self._bad = 0

    def counts(self, seconds: float) -> WindowCounts:
        spans = tuple(ring.span for ring in self._rings)
        ring = self._rings[ring_for(spans, seconds)]
        now = self.clock()
        with self._lock:
            self._settle()
            requests, bad = ring.sum(now, seconds)
        return WindowCounts(requests, bad, min(seconds, self.period_seconds))
