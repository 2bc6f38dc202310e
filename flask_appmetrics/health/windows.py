"""Bounded, thread-safe time windows behind the health endpoint.

Pure Python (no Flask, no prometheus_client), each with an injectable ``clock`` so tests
can move time without sleeping. Three windows, each with a small :class:`typing.Protocol`
so that another backend (a Redis window shared by several worker processes) can replace the
in-process one without touching the health logic:

* :class:`LatencyRing` (a :class:`LatencyWindow`): the last *N* request durations in a
  ``deque(maxlen=N)``: memory stays bounded however long the app runs. Recording is one
  append; the average and p95 are computed when health is read, over at most *N* values.
* :class:`BucketedCounter` (a :class:`RequestWindow`): requests and errors over the last
  *window* seconds in a fixed ring of time buckets. Counts are exact whatever the request
  rate (unlike a sample buffer, nothing is capped), recording is O(1), and memory is a
  fixed number of integers forever.
* :class:`RecentUsers` (a :class:`UserWindow`): distinct identities seen in the last
  *window* seconds, as a least-recently-seen ordered dict of fixed-size hashes, capped at
  *max_tracked* entries, so memory does not depend on what clients send.

The request and user windows guard their state with a lock each; every critical section is
a handful of constant-time operations, so contention stays low even with many threads. The
latency ring takes no lock to record: ``deque.append`` on a bounded deque is one atomic
operation (under the GIL, and under a free-threaded build's per-object lock), and readers
copy the deque, retrying if an append lands mid-copy.

Each window also records in batches (:meth:`LatencyRing.record_many`,
:meth:`BucketedCounter.record_many`, :meth:`RecentUsers.touch_many`): the request
instrumentation logs finished requests and hands them over in one call, with their end
times on its own clock and that clock's present (``now``), so that each request lands in
the time bucket of its end whenever it is handed over, whatever clock the window keeps.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: A monotonic clock in seconds; ``time.monotonic`` unless a test injects its own.
Clock = Callable[[], float]

#: Time buckets of a :class:`BucketedCounter`: the window is counted at 1/60 resolution
#: (5 s buckets for the default 5 minutes).
DEFAULT_BUCKETS = 60

#: Tries at copying the latency ring before the last one, which is left to raise.
_COPY_ATTEMPTS = 100


# -- value objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the durations in a :class:`LatencyWindow`, in seconds.

    All values are ``0.0`` when the window is empty.
    """

    #: Durations currently in the window (at most its size).
    count: int
    average: float
    #: 95th percentile, nearest-rank method (a value that was actually observed).
    p95: float
    maximum: float


@dataclass(frozen=True)
class RequestCounts:
    """Requests and errors counted by a :class:`RequestWindow` over its window."""

    requests: int
    errors: int
    #: The span the counts cover, in seconds.
    window_seconds: float

    @property
    def error_ratio(self) -> float:
        """``errors / requests``, or ``0.0`` with no requests."""
        return self.errors / self.requests if self.requests else 0.0


# -- interfaces ---------------------------------------------------------------------------


@runtime_checkable
class LatencyWindow(Protocol):
    """The most recent request durations."""

    def record(self, seconds: float) -> None:
        """Add one duration. Called once per request: must be O(1) and never block long."""

    def stats(self) -> LatencyStats:
        """Summarise the durations now in the window."""


@runtime_checkable
class LatencyBatches(Protocol):
    """A latency window that takes many durations in one call."""

    def record_many(self, durations: Iterable[float]) -> None:
        """Add *durations*, oldest first."""


@runtime_checkable
class RequestWindow(Protocol):
    """Exact request and error counts over a sliding time window."""

    def record(self, error: bool) -> None:
        """Count one finished request (and one error if *error*). O(1) per call; called
        positionally on the request path (a keyword argument costs more)."""

    def counts(self) -> RequestCounts:
        """Requests and errors within the window as of now."""


@runtime_checkable
class RequestBatches(Protocol):
    """A request window that takes many finished requests in one call."""

    def record_many(self, ended: Sequence[float], failed: Sequence[float], now: float) -> None:
        """Count requests that ended at the times *ended*, of which those at the times
        *failed* were errors; the times are on a clock that reads *now* at this call."""


@runtime_checkable
class UserWindow(Protocol):
    """Distinct user identities seen recently."""

    def touch(self, identity: str) -> None:
        """Note that *identity* made a request now. O(1) per call."""

    def count(self) -> int:
        """Distinct identities seen within the window (capped by the implementation)."""


@runtime_checkable
class UserBatches(Protocol):
    """A users window that takes many sightings in one call."""

    def touch_many(self, sightings: Iterable[tuple[str, float]], now: float) -> None:
        """Note each ``(identity, when)``, oldest first: *identity* made a request at the
        time *when*, on a clock that reads *now* at this call."""


# -- implementations ----------------------------------------------------------------------


class LatencyRing:
    """The last *size* durations in a ring buffer.

    :param size: how many durations to keep (``APPMETRICS_HEALTH_LATENCY_WINDOW``, 100 by
        default).
    """

    __slots__ = ("_lock", "_values", "size")

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        # No lock: appending to a bounded deque (dropping the oldest) is one atomic C call
        # under the GIL, and this runs on every request.
        self._values.append(seconds)

    def record_many(self, durations: Iterable[float]) -> None:
        # One C call: appends every value, dropping the oldest beyond the size.
        self._values.extend(durations)

    def _copy(self) -> list[float]:
        # Copying iterates the deque: an append from another thread in the middle raises
        # "deque mutated during iteration". Retry; the lock makes copiers take turns and
        # lets the last attempt settle (appends are rare compared with a copy's length).
        with self._lock:
            for _ in range(_COPY_ATTEMPTS):
                try:
                    return list(self._values)
                except RuntimeError:
                    continue
            return list(self._values)

    def recent(self) -> tuple[float, ...]:
        """The durations in the window, oldest first (for the status page's plot)."""
        return tuple(self._copy())

    def stats(self) -> LatencyStats:
        values = self._copy()
        if not values:
            return LatencyStats(count=0, average=0.0, p95=0.0, maximum=0.0)
        # Sorting at most ``size`` values when health is read, never on the request path.
        values.sort()
        count = len(values)
        rank = math.ceil(0.95 * count)
        return LatencyStats(
            count=count,
            average=math.fsum(values) / count,
            p95=values[rank - 1],
            maximum=values[-1],
        )


class BucketedCounter:
    """Request and error counts over the last *window_seconds*, in *buckets* time slots.

    Slot ``i`` holds the counts of one bucket-wide interval and is reset when time comes
    round to it again; a read adds up the slots whose interval is within the window. The
    window therefore covers between ``window_seconds - width`` and ``window_seconds`` of
    history, ``width = window_seconds / buckets``; counts within it are exact.

    :param window_seconds: span of the window.
    :param buckets: number of slots: the resolution at which old counts expire.
    :param clock: monotonic time source, in seconds.
    """

    __slots__ = ("_errors", "_lock", "_requests", "_stamps", "buckets", "clock", "width")

    def __init__(
        self,
        window_seconds: float = 300.0,
        *,
        buckets: int = DEFAULT_BUCKETS,
        clock: Clock = time.monotonic,
    ) -> None:
        if not window_seconds > 0 or not math.isfinite(window_seconds):
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets}")
        self.buckets = buckets
        self.width = window_seconds / buckets
        self.clock = clock
        # Parallel lists rather than objects: a record touches three list cells.
        self._stamps = [-1] * buckets
        self._requests = [0] * buckets
        self._errors = [0] * buckets
        self._lock = threading.Lock()

    @property
    def window_seconds(self) -> float:
        return self.width * self.buckets

    def record(self, error: bool) -> None:
        interval = int(self.clock() // self.width)
        slot = interval % self.buckets
        requests = self._requests
        with self._lock:
            if self._stamps[slot] != interval:
                self._stamps[slot] = interval
                requests[slot] = 0
                self._errors[slot] = 0
            requests[slot] += 1
            if error:
                self._errors[slot] += 1

    def record_many(self, ended: Sequence[float], failed: Sequence[float], now: float) -> None:
        # Their clock to ours: what it reads now, we read now.
        offset = self.clock() - now
        requests = _per_interval(ended, offset, self.width)
        errors = _per_interval(failed, offset, self.width)
        current = int((now + offset) // self.width)
        oldest = current - self.buckets + 1
        with self._lock:
            for counts, cells in ((requests, self._requests), (errors, self._errors)):
                for at, count in counts.items():
                    # A time after now (a clock that went back) counts as now.
                    interval = min(at, current)
                    if interval < oldest:
                        continue
                    slot = interval % self.buckets
                    if self._stamps[slot] != interval:
                        self._stamps[slot] = interval
                        self._requests[slot] = 0
                        self._errors[slot] = 0
                    cells[slot] += count

    def counts(self) -> RequestCounts:
        interval = int(self.clock() // self.width)
        oldest = interval - self.buckets + 1
        requests = errors = 0
        with self._lock:
            for slot, stamp in enumerate(self._stamps):
                if oldest <= stamp <= interval:
                    requests += self._requests[slot]
                    errors += self._errors[slot]
        return RequestCounts(requests=requests, errors=errors, window_seconds=self.window_seconds)

    def series(self) -> tuple[RequestCounts, ...]:
        """Counts per time slot over the window, oldest first, empty slots included (for
        the status page's plot); each covers ``width`` seconds."""
        interval = int(self.clock() // self.width)
        with self._lock:
            slots = {
                stamp: (self._requests[slot], self._errors[slot])
                for slot, stamp in enumerate(self._stamps)
            }
        out = []
        for stamp in range(interval - self.buckets + 1, interval + 1):
            requests, errors = slots.get(stamp, (0, 0))
            out.append(RequestCounts(requests=requests, errors=errors, window_seconds=self.width))
        return tuple(out)


def _per_interval(times: Sequence[float], offset: float, width: float) -> dict[int, int]:
    """How many of *times* (plus *offset*) fall in each *width*-wide interval."""
    if not times:
        return {}
    first, last = int((min(times) + offset) // width), int((max(times) + offset) // width)
    if first == last:  # the usual batch: less than a second of requests
        return {first: len(times)}
    return Counter(int((t + offset) // width) for t in times)


class RecentUsers:
    """Distinct identities seen in the last *window_seconds*, at most *max_tracked*.

    Identities are stored as 64-bit hashes (Python's per-process keyed SipHash, salted
    again at random), so an entry costs the same whatever a client sends and the raw
    identity (a token, say) is never kept; a collision can only undercount. Entries are
    ordered by last sighting: expired ones are dropped from the old end, and when
    *max_tracked* is reached the least recently seen identity is evicted, so
    :meth:`count` saturates at *max_tracked*.

    :param window_seconds: how long an identity counts after its last request.
    :param max_tracked: the most identities kept.
    :param clock: monotonic time source, in seconds.
    """

    __slots__ = ("_lock", "_salt", "_seen", "clock", "max_tracked", "window_seconds")

    def __init__(
        self,
        window_seconds: float = 300.0,
        *,
        max_tracked: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if max_tracked < 1:
            raise ValueError(f"max_tracked must be at least 1, got {max_tracked}")
        self.window_seconds = window_seconds
        self.max_tracked = max_tracked
        self.clock = clock
        self._salt = int.from_bytes(os.urandom(8), "big")
        self._seen: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()

    #: A sighting this soon after the identity's last one changes nothing worth the lock: a
    #: client's burst of requests (a page, its assets, its API calls) refreshes it once.
    REFRESH_SECONDS = 1.0

    def touch(self, identity: str) -> None:
        # Not a cryptographic digest: hash() is 10x cheaper and this runs on every request.
        digest = hash((self._salt, identity))
        now = self.clock()
        last = self._seen.get(digest)  # a C-level read: safe without the lock
        if last is not None and now - last < self.REFRESH_SECONDS:
            return
        with self._lock:
            seen = self._seen
            seen[digest] = now
            seen.move_to_end(digest)
            if len(seen) > self.max_tracked:
                seen.popitem(last=False)

    def touch_many(self, sightings: Iterable[tuple[str, float]], now: float) -> None:
        offset = self.clock() - now
        salt = self._salt
        refresh = self.REFRESH_SECONDS
        with self._lock:
            seen = self._seen
            for identity, then in sightings:
                when = then + offset
                digest = hash((salt, identity))
                last = seen.get(digest)
                if last is not None and when - last < refresh:
                    continue
                seen[digest] = when
                seen.move_to_end(digest)
            while len(seen) > self.max_tracked:
                seen.popitem(last=False)

    def count(self) -> int:
        horizon = self.clock() - self.window_seconds
        with self._lock:
            seen = self._seen
            # Oldest first: stop at the first entry still inside the window. Each entry is
            # dropped once, so the cost is amortised O(1) per touch.
            while seen:
                digest, last = next(iter(seen.items()))
                if last > horizon:
                    break
                del seen[digest]
            return len(seen)
