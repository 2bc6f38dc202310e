"""Spend against a daily budget: the estimated USD cost of LLM calls today.

Pure Python, clock injectable. "Today" is the quota's day (:mod:`flask_appmetrics.llm.quota`):
midnight to midnight in ``APPMETRICS_QUOTA_TIMEZONE``, by default Pacific time, when
Gemini's daily quotas reset too. The value is computed when read, so it falls back to 0 at
midnight even when nothing is recorded any more (the gauges built on it are read at scrape
time).

:class:`SpendCounter` is the interface; :class:`InMemorySpend` keeps one process's spend,
and :class:`~flask_appmetrics.integrations.redis.llm.SharedSpend` every process's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from .quota import DEFAULT_TIMEZONE


class SpendCounter(Protocol):
    """Adds up the day's spend."""

    def add(self, usd: float) -> float:
        """Add *usd* to today's spend; return today's spend including it."""
        ...

    def today(self) -> float:
        """Today's spend so far."""
        ...


def remaining(budget: float | None, spent: float) -> float:
    """What is left of *budget* after *spent* (0 when overspent; +Inf without a budget, so
    that "remaining below N" alerts stay false, as for the quota)."""
    if budget is None:
        return float("inf")
    return max(budget - spent, 0.0)


class InMemorySpend:
    """:class:`SpendCounter` for one process (one lock, O(1)).

    :param timezone: IANA name of the zone whose midnight starts a new day.
    :param clock: seconds since the epoch; ``time.time`` unless testing.
    """

    def __init__(
        self, timezone: str = DEFAULT_TIMEZONE, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._zone = ZoneInfo(timezone)
        self._clock = clock
        self._lock = threading.Lock()
        self._day: date | None = None
        self._spent = 0.0

    def _roll(self) -> None:
        # Called with the lock held: a new day starts from zero.
        day = datetime.fromtimestamp(self._clock(), self._zone).date()
        if day != self._day:
            self._day = day
            self._spent = 0.0

    def add(self, usd: float) -> float:
        with self._lock:
            self._roll()
            self._spent += usd
            return self._spent

    def today(self) -> float:
        with self._lock:
            self._roll()
            return self._spent
