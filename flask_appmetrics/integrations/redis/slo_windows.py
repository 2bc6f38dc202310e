"""Service level objective windows shared through Redis by every worker and host.

With ``APPMETRICS_REDIS_URL`` set, each objective's good and bad counts live in Redis too,
so that ``/api/health`` reports burn rates and budgets of every process (``scope``
``shared``) instead of the one that answers. Per objective and ring of
:class:`~flask_appmetrics.slo.windows.SloWindow` (1 h, 6 h, the period), one hash whose
fields are ``<interval>:r`` (requests) and ``<interval>:b`` (bad ones) of each time bucket,
named by wall-clock intervals so all hosts agree.

Like the health windows (:mod:`~flask_appmetrics.integrations.redis.windows`), a request
only adds to in-process pending counts, which the link sends in its batched ``MULTI``
pipeline (``HINCRBY``); the in-process window is always updated as well and answers while
Redis is away (the report's ``scope`` then says ``process``). Fields leave as their bucket
comes round again (the write of interval *i* deletes interval *i - 240*) or when a read
finds them too old, and each hash expires a little after its span without writes, so
nothing grows.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from ...slo.windows import (
    RING_BUCKETS,
    Clock,
    SloWindow,
    WindowCounts,
    WindowScope,
    ring_for,
    ring_spans,
)
from .link import PendingOps, RedisLink

if TYPE_CHECKING:
    import redis

    from ...slo.objectives import Objective


class SharedSloWindow:
    """One objective's requests, counted by every process.

    :param link: the app's Redis link.
    :param objective: the objective (its name and indicator name the keys).
    :param local: this process's window: always updated, read while Redis is away.
    :param clock: wall-clock seconds (shared by hosts, unlike a monotonic clock).
    """

    def __init__(
        self,
        link: RedisLink,
        objective: Objective,
        local: SloWindow,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.link = link
        self.local = local
        self.clock = clock
        self._spans = ring_spans(local.period_seconds)
        self._widths = tuple(span / RING_BUCKETS for span in self._spans)
        self._keys = tuple(
            link.key("slo", objective.name, objective.sli, index)
            for index in range(len(self._spans))
        )
        self._ttls = tuple(math.ceil(span + 2 * span / RING_BUCKETS) for span in self._spans)
        self._pending: dict[tuple[int, int], list[int]] = {}
        self._lock = threading.Lock()
        link.add_source(self._take)

    @property
    def scope(self) -> WindowScope:
        return "shared" if self.link.available else "process"

    def record(self, bad: bool) -> None:
        self.local.record(bad)
        now = self.clock()
        with self._lock:
            for ring, width in enumerate(self._widths):
                key = (ring, int(now // width))
                counts = self._pending.get(key)
                if counts is None:
                    counts = self._pending[key] = [0, 0]
                counts[0] += 1
                if bad:
                    counts[1] += 1
        self.link.maybe_flush()

    def _take(self) -> PendingOps | None:
        with self._lock:
            if not self._pending:
                return None
            pending, self._pending = self._pending, {}

        def ops(pipe: redis.client.Pipeline) -> None:
            for (ring, interval), (requests, bad) in pending.items():
                key = self._keys[ring]
                pipe.hincrby(key, f"{interval}:r", requests)
                if bad:
                    pipe.hincrby(key, f"{interval}:b", bad)
                # The bucket this one replaces, one ring ago.
                stale = interval - RING_BUCKETS
                pipe.hdel(key, f"{stale}:r", f"{stale}:b")
                pipe.expire(key, self._ttls[ring])

        return ops

    def counts(self, seconds: float) -> WindowCounts:
        self.link.flush()
        ring = ring_for(self._spans, seconds)
        width = self._widths[ring]
        key = self._keys[ring]
        span = min(seconds, self._spans[-1])

        def op(r: redis.Redis) -> WindowCounts:
            interval = int(self.clock() // width)
            oldest = interval - max(1, min(RING_BUCKETS, round(seconds / width))) + 1
            expired = interval - RING_BUCKETS
            requests = bad = 0
            stale: list[str] = []
            for raw, value in r.hgetall(key).items():
                field = raw.decode() if isinstance(raw, bytes) else str(raw)
                stamp, _, kind = field.partition(":")
                bucket = int(stamp)
                if bucket <= expired:
                    stale.append(field)
                elif oldest <= bucket <= interval:
                    if kind == "r":
                        requests += int(value)
                    else:
                        bad += int(value)
            if stale:
                r.hdel(key, *stale)
            return WindowCounts(requests, bad, span)

        return self.link.run(op, lambda: self.local.counts(seconds))
