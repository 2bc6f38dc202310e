"""The gauges computed when a registry is collected: quota usage and learned limits, LLM
spend and budget, cache hit rate and sizes, health checks and verdicts.

One :class:`ScrapeTimeGauges` collector per registry serves every family of
:data:`~flask_appmetrics.metrics.catalog.SCRAPE_TIME_FAMILIES`. Being one collector, it
reads the quota counter once per collection (with Redis: one round trip for the six quota
gauges), and it can leave a sample out: a value that is not known yet (the hit rate before
the first cache operation) or that could not be read (a size callable that raised) has no
sample, where a ``Gauge`` would show a number.

One :class:`HealthGauges` collector per registry serves
:data:`~flask_appmetrics.metrics.catalog.HEALTH_FAMILIES` from the health monitors of the
registry's apps.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric, StateSetMetricFamily

from ..errors import count_internal_error
from ..llm.budget import remaining
from ..llm.conventions import LLM_FAMILIES
from ..llm.learned import LearnedLimit
from ..llm.quota import QuotaLimits, QuotaUsage
from .catalog import HEALTH_FAMILIES, HEALTH_STATUSES, SCRAPE_TIME_FAMILIES, hit_rate

logger = logging.getLogger("flask_appmetrics")

_T = TypeVar("_T")

#: Returns a gauge's value at scrape time, or ``None`` for no sample.
ValueFunction = Callable[[], "float | None"]

#: Reads the quota at scrape time: the usage now and the limits it is measured against.
QuotaReading = Callable[[], "tuple[QuotaUsage, QuotaLimits]"]


@dataclass(frozen=True)
class LlmReading:
    """The LLM accounting at one scrape: today's spend, the budget (``None``: none) and the
    limits learned from refusals (empty while limits are configured)."""

    spend_today: float
    budget: float | None
    learned: tuple[LearnedLimit, ...] = ()


_QUOTA_GAUGES: tuple[tuple[str, Callable[[QuotaUsage, QuotaLimits], float]], ...] = (
    ("quota_requests_current_minute", lambda u, _: u.requests_minute),
    ("quota_tokens_current_minute", lambda u, _: u.tokens_minute),
    ("quota_requests_today", lambda u, _: u.requests_today),
    ("quota_tokens_today", lambda u, _: u.tokens_today),
    ("quota_rpm_remaining", lambda u, limits: _remaining(limits.rpm, u.requests_minute)),
    ("quota_tpm_remaining", lambda u, limits: _remaining(limits.tpm, u.tokens_minute)),
)


#: The scrape-time gauges of the ``gemini`` family set.
_GEMINI_GAUGES = (
    "gemini_api_daily_budget_usd",
    "gemini_api_spend_today_usd",
    "gemini_api_budget_remaining_usd",
)


def _remaining(limit: int | None, used: int) -> float:
    # An unlimited quota has infinitely many left: +Inf keeps the six gauges on the page
    # and makes "remaining < N" alerts false, where a missing sample would hide it.
    return math.inf if limit is None else float(max(limit - used, 0))


class ScrapeTimeGauges:
    """The scrape-time gauges of one registry (a prometheus_client custom collector).

    :param on_error: counts an internal error by component (``scrape_value``).
    """

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._operations: Counter | None = None
        self._on_error = on_error
        self._quota: QuotaReading | None = None
        self._llm: Callable[[], LlmReading] | None = None
        #: The LLM family sets on (``APPMETRICS_LLM_FAMILIES``): the ``gemini_api_*``
        #: gauges here are served with the ``gemini`` set only.
        self.llm_families: frozenset[str] = frozenset(LLM_FAMILIES)
        self._layers: dict[str, tuple[ValueFunction | None, ValueFunction | None]] = {}
        self._lock = threading.Lock()

    def names(self) -> tuple[str, ...]:
        """The families this collector serves."""
        return tuple(f.name for f in SCRAPE_TIME_FAMILIES)

    def count_hits(self, operations: Counter) -> None:
        """Compute ``cache_hit_rate`` from *operations* (``cache_operations_total``)."""
        self._operations = operations

    def watch_quota(self, reading: QuotaReading) -> None:
        """Serve the quota gauges from *reading*, called once per collection."""
        self._quota = reading

    def watch_llm(self, reading: Callable[[], LlmReading]) -> None:
        """Serve the spend, budget and learned limit gauges from *reading*, called once per
        collection."""
        self._llm = reading

    def set_layer(
        self, label: str, size_bytes: ValueFunction | None, items: ValueFunction | None
    ) -> None:
        """Serve ``cache_size_bytes`` and ``cache_items_count`` of *label* from callables
        (``None``: no sample); replaces the layer's earlier callables."""
        with self._lock:
            self._layers[label] = (size_bytes, items)

    def describe(self) -> Iterable[Metric]:
        # The family names, for the registry's duplicate check and ``?name[]=`` filters.
        return [
            GaugeMetricFamily(f.name, f.documentation, labels=f.labelnames)
            for f in SCRAPE_TIME_FAMILIES
        ]

    def collect(self) -> Iterable[Metric]:
        families = {
            f.name: GaugeMetricFamily(f.name, f.documentation, labels=f.labelnames)
            for f in SCRAPE_TIME_FAMILIES
        }
        reading = self._quota
        if reading is not None:
            quota = self._value(reading)
            if quota is not None:
                usage, limits = quota
                for name, read in _QUOTA_GAUGES:
                    families[name].add_metric([], read(usage, limits))
        self._collect_llm(families)
        rate = self._value(self._hit_rate)
        if rate is not None:
            families["cache_hit_rate"].add_metric([], rate)
        with self._lock:
            layers = list(self._layers.items())
        for label, functions in layers:
            sizes = zip(("cache_size_bytes", "cache_items_count"), functions, strict=True)
            for name, function in sizes:
                if function is not None:
                    number = self._number(function)
                    if number is not None:
                        families[name].add_metric([label], number)
        if "gemini" not in self.llm_families:
            for name in _GEMINI_GAUGES:
                families.pop(name)
        return list(families.values())

    def _collect_llm(self, families: dict[str, GaugeMetricFamily]) -> None:
        reading = self._llm
        llm = self._value(reading) if reading is not None else None
        if llm is None:
            return
        if llm.budget is not None:
            families["gemini_api_daily_budget_usd"].add_metric([], llm.budget)
        families["gemini_api_spend_today_usd"].add_metric([], llm.spend_today)
        families["gemini_api_budget_remaining_usd"].add_metric(
            [], remaining(llm.budget, llm.spend_today)
        )
        for learned in llm.learned:
            families["quota_learned_limit"].add_metric(
                [learned.model, learned.limit, learned.source], learned.value
            )

    def _hit_rate(self) -> float | None:
        # From the counter's own samples at this scrape, so it never disagrees with them.
        if self._operations is None:
            return None
        hits = misses = 0.0
        for labels, value in _samples(self._operations):
            if labels.get("operation") == "get":
                if labels.get("result") == "hit":
                    hits += value
                elif labels.get("result") == "miss":
                    misses += value
        return hit_rate(hits, misses)

    def _number(self, function: ValueFunction) -> float | None:
        value = self._value(function)
        if value is None:
            return None
        try:
            # A string, an object or an int beyond float's range costs this sample only.
            return float(value)
        except Exception:
            self._failed()
            return None

    def _value(self, function: Callable[[], _T | None]) -> _T | None:
        try:
            return function()
        except Exception:
            self._failed()
            return None

    def _failed(self) -> None:
        logger.exception("flask-appmetrics: a scrape-time value failed; sample skipped")
        count_internal_error("scrape_value", self._on_error)


class UserCount(Protocol):
    """A users window, as the users gauge reads it (``store``, if it has one, names the
    shared set it counts, so that windows reading one store are counted once)."""

    def count(self) -> int: ...


class UsersSource(Protocol):
    """What counts an app's distinct users (its health monitor)."""

    @property
    def users(self) -> UserCount: ...


class UsersGauge:
    """``concurrent_users`` of one registry: the sum over the distinct users windows of the
    registry's apps still alive.

    Each app counts its own distinct users, and apps whose windows read the same store (a
    Redis set shared by every app with the same Redis server and prefix) count it once. A
    window that fails is skipped, logged and counted as an internal error
    (``concurrent_users``): a scrape never fails because of it.

    :param gauge: the catalog's ``concurrent_users`` gauge.
    :param on_error: counts an internal error by component.
    """

    def __init__(self, gauge: Gauge, on_error: Callable[[str], None]) -> None:
        self._sources: weakref.WeakSet[UsersSource] = weakref.WeakSet()
        self._on_error = on_error
        gauge.set_function(self._value)

    def add(self, source: UsersSource) -> None:
        """Count *source*'s users too, while it is alive (held weakly)."""
        self._sources.add(source)

    def _value(self) -> float:
        counted: set[Hashable] = set()
        total = 0
        for source in list(self._sources):
            window = source.users
            store = getattr(window, "store", None)
            # An in-process window is its own store.
            key = ("window", id(window)) if store is None else ("store", store)
            if key in counted:
                continue
            counted.add(key)
            try:
                total += window.count()
            except Exception:
                logger.exception("flask-appmetrics: a users window failed; skipped in the gauge")
                count_internal_error("concurrent_users", self._on_error)
        return float(total)


class CheckReading(Protocol):
    """One health check's result, as the health gauges read it."""

    @property
    def name(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def duration_seconds(self) -> float: ...


class HealthReading(Protocol):
    """One evaluation of an app's health, as the health gauges read it."""

    @property
    def status(self) -> str: ...
    @property
    def checks(self) -> Sequence[CheckReading]: ...


class HealthSource(Protocol):
    """What judges an app's health (its health monitor)."""

    def evaluate(self) -> HealthReading: ...


class HealthGauges:
    """The health families of one registry: each check's last result and duration, and
    the verdict, from the health monitors of the registry's apps still alive.

    Evaluating reuses the checks' cached results and runs only the stale ones, each within
    its timeout, so a scrape waits for a slow check no longer than that. Apps sharing a
    registry (tests, several apps in one process) are summed up worst-first: a check name
    is down if it is down in any app, takes the longest duration, and the verdict is the
    worst. An app whose evaluation fails is skipped, logged and counted as an internal
    error (``scrape_value``).

    :param on_error: counts an internal error by component.
    """

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._sources: weakref.WeakSet[HealthSource] = weakref.WeakSet()
        self._on_error = on_error

    def names(self) -> tuple[str, ...]:
        """The families this collector serves."""
        return tuple(f.name for f in HEALTH_FAMILIES)

    def add(self, source: HealthSource) -> None:
        """Report *source*'s health too, while it is alive (held weakly)."""
        self._sources.add(source)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, StateSetMetricFamily]:
        up, duration, status = HEALTH_FAMILIES
        return (
            GaugeMetricFamily(up.name, up.documentation, labels=up.labelnames),
            GaugeMetricFamily(duration.name, duration.documentation, labels=duration.labelnames),
            # Its one label is named after the family, as OpenMetrics enums are.
            StateSetMetricFamily(status.name, status.documentation),
        )

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        up: dict[str, bool] = {}
        durations: dict[str, float] = {}
        worst: int | None = None
        for source in list(self._sources):
            try:
                report = source.evaluate()
            except Exception:
                logger.exception("flask-appmetrics: health evaluation failed; left out")
                count_internal_error("scrape_value", self._on_error)
                continue
            rank = HEALTH_STATUSES.index(report.status) if report.status in HEALTH_STATUSES else 2
            worst = rank if worst is None else max(worst, rank)
            for check in report.checks:
                up[check.name] = up.get(check.name, True) and check.passed
                durations[check.name] = max(durations.get(check.name, 0.0), check.duration_seconds)
        up_family, duration_family, status_family = self._families()
        for name, passed in up.items():
            up_family.add_metric([name], 1.0 if passed else 0.0)
            duration_family.add_metric([name], durations[name])
        if worst is not None:
            status_family.add_metric(
                [], {status: i == worst for i, status in enumerate(HEALTH_STATUSES)}
            )
        return [up_family, duration_family, status_family]


def _samples(counter: Counter) -> Iterator[tuple[dict[str, str], float]]:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, sample.value
