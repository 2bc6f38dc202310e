"""API quota usage: requests and tokens in the current minute and today.

Pure Python (no Flask, no prometheus_client), with an injectable clock, so it is tested
without waiting. Values are computed when read, so "this minute" falls back to 0 as soon
as the minute is over, even when nothing is recorded any more: the gauges built on it are
read at scrape time.

The minute is the clock's calendar minute (``:00`` to ``:59``); the day runs from midnight
to midnight in a configured time zone, by default ``America/Los_Angeles`` since Gemini's
daily quotas reset at midnight Pacific time.

:class:`QuotaCounter` is the interface; :class:`InMemoryQuota` keeps one process's usage.
A shared implementation (Redis, say, for several workers) only has to provide the same two
methods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

#: Where Gemini's daily quotas reset.
DEFAULT_TIMEZONE = "America/Los_Angeles"


@dataclass(frozen=True)
class QuotaUsage:
    """Usage at one instant."""

    requests_minute: int = 0
    tokens_minute: int = 0
    requests_today: int = 0
    tokens_today: int = 0


@dataclass(frozen=True)
class QuotaLimits:
    """Configured limits; ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None

    def exceeded(self, usage: QuotaUsage) -> tuple[str, ...]:
        """The names of the limits *usage* is over (``rpm``, ``tpm``, ``rpd``, ``tpd``)."""
        pairs = (
            ("rpm", self.rpm, usage.requests_minute),
            ("tpm", self.tpm, usage.tokens_minute),
            ("rpd", self.rpd, usage.requests_today),
            ("tpd", self.tpd, usage.tokens_today),
        )
        return tuple(name for name, limit, used in pairs if limit is not None and used > limit)

    def items(self) -> tuple[tuple[str, int], ...]:
        """The configured (finite) limits by name."""
        pairs = (("rpm", self.rpm), ("tpm", self.tpm), ("rpd", self.rpd), ("tpd", self.tpd))
        return tuple((name, limit) for name, limit in pairs if limit is not None)


class QuotaCounter(Protocol):
    """Counts requests and tokens per minute and per day."""

    def add(self, requests: int, tokens: int) -> QuotaUsage:
        """Record usage; return the usage including it (atomically, for limit checks)."""
        ...

    def usage(self) -> QuotaUsage:
        """The usage now."""
        ...


class InMemoryQuota:
    """:class:`QuotaCounter` for one process. Exact under concurrency (one lock, O(1)).

    :param timezone: IANA name of the zone whose midnight starts a new day.
    :param clock: seconds since the epoch; ``time.time`` unless testing.
    """

    def __init__(
        self, timezone: str = DEFAULT_TIMEZONE, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._zone = ZoneInfo(timezone)
        self._clock = clock
        self._lock = threading.Lock()
        self._minute = -1
        self._day: date | None = None
        self._requests_minute = 0
        self._tokens_minute = 0
        self._requests_today = 0
        self._tokens_today = 0

    def _roll(self, now: float) -> None:
        # Called with the lock held: forget the minute or day that is over.
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._requests_minute = self._tokens_minute = 0
        day = datetime.fromtimestamp(now, self._zone).date()
        if day != self._day:
            self._day = day
            self._requests_today = self._tokens_today = 0

    def _snapshot(self) -> QuotaUsage:
        return QuotaUsage(
            self._requests_minute, self._tokens_minute, self._requests_today, self._tokens_today
        )

    def add(self, requests: int, tokens: int) -> QuotaUsage:
        with self._lock:
            self._roll(self._clock())
            self._requests_minute += requests
            self._tokens_minute += tokens
            self._requests_today += requests
            self._tokens_today += tokens
            return self._snapshot()

    def usage(self) -> QuotaUsage:
        with self._lock:
            self._roll(self._clock())
            return self._snapshot()
