"""The status page's figures beyond the health report, read from the registry ``/metrics``
serves (so in multiprocess mode they are every worker's): traffic over time, the busiest
endpoints, the LLM block, quota headroom and cache hit ratios per layer.

Traffic over time comes from readings of the request counters and the duration histogram,
taken when the page or its data is served (at most one per half refresh period) and kept
for the health window (``APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS``): each pair of
consecutive readings gives one interval's requests per second, error ratio and p50/p95
latency (interpolated in the histogram's buckets, as ``histogram_quantile`` does). So the
chart fills in while someone watches, costs nothing while nobody does, and shows the same
numbers Prometheus would compute from ``/metrics``. Readings are per process: under
gunicorn each worker answering the page keeps its own, of the same totals.

The extension's own endpoints (``/metrics``, health, probes, the page itself) are left out,
as the recording rules leave them out: the page's own polling must not show as traffic.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

#: Samples by sample name: each sample's labels and value.
Samples = Mapping[str, list[tuple[dict[str, str], float]]]

#: How many of the busiest endpoints the table shows.
ENDPOINT_ROWS = 8
#: Readings kept at most, whatever the window and refresh period.
MAX_READINGS = 720

_QUOTA_USAGE = {
    "rpm": ("quota_requests_current_minute", "requests this minute"),
    "tpm": ("quota_tokens_current_minute", "tokens this minute"),
    "rpd": ("quota_requests_today", "requests today"),
    "tpd": ("quota_tokens_today", "tokens today"),
}
# The LLM families that may be absent (the gemini set turned off, the budget not set, no
# stream yet, or a worker's window under gunicorn without Redis): shown when present.
_COST_TODAY = re.compile(r"^gemini_api_spend_today_usd$")
_BUDGET = re.compile(r"^gemini_api_daily_budget_usd$")
_FIRST_CHUNK = re.compile(r"^gemini_api_time_to_first_chunk_seconds_bucket$")


def read_samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample *registry* gives now, grouped by sample name."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _sum(samples: Samples, name: str, **labels: str) -> float | None:
    found = samples.get(name)
    if not found:
        return None
    return sum(v for ls, v in found if all(ls.get(k) == want for k, want in labels.items()))


def quantile(q: float, bounds: tuple[float, ...], cumulative: tuple[float, ...]) -> float | None:
    """The *q* quantile of a histogram whose cumulative bucket counts are *cumulative* for
    the upper *bounds* (the last one ``+Inf``), interpolated linearly within its bucket like
    Prometheus' ``histogram_quantile``; ``None`` without observations."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound, as Prometheus does
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Totals:
    """Request counters of one endpoint (or all), since start."""

    requests: float = 0.0
    errors: float = 0.0
    #: Cumulative counts of ``http_request_duration_seconds`` per bucket bound.
    buckets: tuple[float, ...] = ()

    def minus(self, earlier: Totals) -> Totals:
        """What happened between *earlier* and this (nothing for a counter that went back,
        which only a restart or a new registry does)."""
        # A reading from before the first request has no buckets at all: zeros.
        before = earlier.buckets or tuple(0.0 for _ in self.buckets)
        if self.requests < earlier.requests or len(self.buckets) != len(before):
            return Totals(buckets=tuple(0.0 for _ in self.buckets))
        return Totals(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            tuple(max(a - b, 0.0) for a, b in zip(self.buckets, before, strict=True)),
        )

    def plus(self, other: Totals) -> Totals:
        buckets = self.buckets or tuple(0.0 for _ in other.buckets)
        return Totals(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple(a + b for a, b in zip(buckets, other.buckets, strict=True)),
        )


@dataclass(frozen=True)
class Reading:
    """The request counters at one moment, by endpoint."""

    at: float
    bounds: tuple[float, ...]
    endpoints: Mapping[str, Totals] = field(default_factory=dict)

    def total(self) -> Totals:
        out = Totals(buckets=tuple(0.0 for _ in self.bounds))
        for totals in self.endpoints.values():
            out = out.plus(totals)
        return out


def reading_of(samples: Samples, at: float, excluded: Iterable[str]) -> Reading:
    """The request counters in *samples*, by endpoint, without the *excluded* ones."""
    skip = frozenset(excluded)
    requests: dict[str, list[float]] = {}
    for labels, value in samples.get("http_requests_total", ()):
        endpoint = labels.get("endpoint", "")
        if endpoint in skip:
            continue
        entry = requests.setdefault(endpoint, [0.0, 0.0])
        entry[0] += value
        if labels.get("status", "").startswith("5"):
            entry[1] += value
    per_bound: dict[str, dict[float, float]] = {}
    bounds: set[float] = set()
    for labels, value in samples.get("http_request_duration_seconds_bucket", ()):
        endpoint = labels.get("endpoint", "")
        if endpoint in skip:
            continue
        try:
            bound = float(labels.get("le", "nan"))
        except ValueError:
            continue
        if math.isnan(bound):
            continue
        bounds.add(bound)
        counts = per_bound.setdefault(endpoint, {})
        counts[bound] = counts.get(bound, 0.0) + value
    ordered = tuple(sorted(bounds))
    endpoints = {
        endpoint: Totals(
            requests=counts[0],
            errors=counts[1],
            buckets=tuple(per_bound.get(endpoint, {}).get(b, 0.0) for b in ordered),
        )
        for endpoint, counts in requests.items()
    }
    return Reading(at, ordered, endpoints)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole > 0 else None


def _latency(bounds: tuple[float, ...], totals: Totals) -> dict[str, float | None]:
    return {
        "p50_ms": _ms(quantile(0.5, bounds, totals.buckets)),
        "p95_ms": _ms(quantile(0.95, bounds, totals.buckets)),
    }


class TrafficHistory:
    """Readings of the request counters over the window, turned into rates.

    :param window_seconds: how far back the chart goes.
    :param min_interval: readings closer than this to the last one are not kept.
    :param clock: wall-clock time, in seconds (``time.time``; tests move a fake one).
    """

    def __init__(
        self,
        window_seconds: float,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_seconds = window_seconds
        self.min_interval = min_interval
        self.clock = clock
        self._readings: deque[Reading] = deque(maxlen=MAX_READINGS)
        self._lock = threading.Lock()

    def add(self, reading: Reading) -> None:
        """Keep *reading* (unless the last one is too recent) and forget those the window
        no longer needs (one older than the window stays, as the first interval's start)."""
        with self._lock:
            readings = self._readings
            if readings and reading.at - readings[-1].at < self.min_interval:
                return
            last = readings[-1] if readings else None
            if last is not None and last.bounds and reading.bounds != last.bounds:
                readings.clear()  # new buckets (a reconfigured registry): start afresh
            readings.append(reading)
            start = reading.at - self.window_seconds
            while len(readings) > 1 and readings[1].at <= start:
                readings.popleft()

    def readings(self) -> tuple[Reading, ...]:
        with self._lock:
            return tuple(self._readings)

    def points(self) -> list[dict[str, Any]]:
        """One entry per interval between consecutive readings, oldest first."""
        readings = self.readings()
        points = []
        for earlier, later in itertools.pairwise(readings):
            seconds = later.at - earlier.at
            if seconds <= 0:
                continue
            delta = later.total().minus(earlier.total())
            points.append(
                {
                    "start": round(earlier.at, 3),
                    "end": round(later.at, 3),
                    "rps": round(delta.requests / seconds, 6),
                    "error_ratio": _ratio(delta.errors, delta.requests),
                    **_latency(later.bounds, delta),
                }
            )
        return points

    def endpoints(self, latest: Reading, limit: int = ENDPOINT_ROWS) -> dict[str, Any]:
        """The busiest endpoints: over the kept readings when there are two, else since
        start (no rate then)."""
        readings = self.readings()
        first = readings[0] if readings and readings[0].at < latest.at else None
        span = latest.at - first.at if first is not None else None
        rows = []
        for endpoint, totals in latest.endpoints.items():
            # An endpoint first seen after the oldest reading: all of it is recent.
            base = first.endpoints.get(endpoint) if first is not None else None
            delta = totals if base is None else totals.minus(base)
            if delta.requests <= 0:
                continue
            rows.append(
                {
                    "endpoint": endpoint,
                    "requests": delta.requests,
                    "rps": round(delta.requests / span, 6) if span else None,
                    "error_ratio": _ratio(delta.errors, delta.requests),
                    "p95_ms": _ms(quantile(0.95, latest.bounds, delta.buckets)),
                }
            )
        rows.sort(key=_busiest_first)
        return {"span_seconds": round(span, 3) if span else None, "rows": rows[:limit]}


def _busiest_first(row: dict[str, Any]) -> tuple[float, str]:
    return -float(row["requests"]), str(row["endpoint"])


def traffic(history: TrafficHistory, latest: Reading) -> dict[str, Any]:
    """The chart's data: the intervals over the window and the totals since start."""
    total = latest.total()
    readings = history.readings()
    return {
        "now": round(latest.at, 3),
        "window_seconds": history.window_seconds,
        "since": round(readings[0].at, 3) if readings else round(latest.at, 3),
        "points": history.points(),
        "since_start": {
            "requests": total.requests,
            "errors": total.errors,
            "error_ratio": _ratio(total.errors, total.requests),
            **_latency(latest.bounds, total),
        },
    }


def llm(samples: Samples, budget_usd: float | None) -> dict[str, Any] | None:
    """Calls, tokens and cost since start (and today's, with the budget, when exported);
    ``None`` when the app has no Gemini series at all."""
    calls = samples.get("gemini_api_calls_total")
    models: dict[str, dict[str, float]] = {}
    for labels, value in calls or ():
        entry = models.setdefault(labels.get("model", ""), {"calls": 0.0, "errors": 0.0})
        entry["calls"] += value
        if labels.get("status") == "error":
            entry["errors"] += value
    for name, key in (("gemini_api_tokens_total", "tokens"), ("gemini_api_cost_usd_total", "cost")):
        for labels, value in samples.get(name, ()):
            entry = models.setdefault(labels.get("model", ""), {"calls": 0.0, "errors": 0.0})
            entry[key] = entry.get(key, 0.0) + value
    cost_today = budget = None
    first_chunk: dict[float, float] = {}
    for name, found in samples.items():
        if _COST_TODAY.match(name):
            cost_today = (cost_today or 0.0) + sum(v for _, v in found)
        elif _BUDGET.match(name) and found:
            budget = max(v for _, v in found)
        elif _FIRST_CHUNK.match(name):
            for labels, value in found:
                bound = float(labels.get("le", "nan"))
                if not math.isnan(bound):
                    first_chunk[bound] = first_chunk.get(bound, 0.0) + value
    if budget_usd is not None:
        budget = budget_usd
    # Spend today is exported at 0 from the start: no call and no budget is no LLM block.
    if not calls and not cost_today and budget is None:
        return None
    bounds = tuple(sorted(first_chunk))
    ttfc = quantile(0.5, bounds, tuple(first_chunk[b] for b in bounds)) if bounds else None
    return {
        "calls": sum(m["calls"] for m in models.values()),
        "errors": sum(m["errors"] for m in models.values()),
        "tokens": _sum(samples, "gemini_api_tokens_total") or 0.0,
        "cost_usd": round(_sum(samples, "gemini_api_cost_usd_total") or 0.0, 6),
        "calls_today": _sum(samples, "quota_requests_today"),
        "tokens_today": _sum(samples, "quota_tokens_today"),
        "cost_today_usd": None if cost_today is None else round(cost_today, 6),
        "budget_usd": budget,
        "first_chunk_p50_ms": _ms(ttfc),
        "models": [
            {
                "model": model,
                "calls": entry["calls"],
                "errors": entry["errors"],
                "tokens": entry.get("tokens", 0.0),
                "cost_usd": round(entry.get("cost", 0.0), 6),
            }
            for model, entry in sorted(models.items(), key=lambda item: -item[1]["calls"])
        ][:5],
    }


def quota(samples: Samples) -> list[dict[str, Any]]:
    """Each configured limit with its usage now (limits whose usage is not exported, as
    with per-worker windows under gunicorn without Redis, are left out)."""
    rows = []
    limits = {labels.get("limit", ""): value for labels, value in samples.get("quota_limit", ())}
    for name, (usage, label) in _QUOTA_USAGE.items():
        limit = limits.get(name)
        used = _sum(samples, usage)
        if limit is None or used is None or limit <= 0:
            continue
        rows.append({"limit": name, "label": label, "used": used, "max": limit})
    return rows


def caches(samples: Samples) -> list[dict[str, Any]]:
    """Hit ratio since start per cache layer (all layers as one without layer reports),
    with the sizes the layers report."""
    layers: dict[str, dict[str, Any]] = {}
    for labels, value in samples.get("cache_layer_operations_total", ()):
        if labels.get("operation") != "get" or labels.get("result") not in ("hit", "miss"):
            continue
        entry = layers.setdefault(labels.get("layer", ""), {"hits": 0.0, "misses": 0.0})
        entry["hits" if labels["result"] == "hit" else "misses"] += value
    if not layers:
        hits = _sum(samples, "cache_operations_total", operation="get", result="hit") or 0.0
        misses = _sum(samples, "cache_operations_total", operation="get", result="miss") or 0.0
        if hits + misses > 0:
            layers["all"] = {"hits": hits, "misses": misses}
    for name, key in (("cache_size_bytes", "size_bytes"), ("cache_items_count", "items")):
        for labels, value in samples.get(name, ()):
            layer = labels.get("layer", "")
            if layer in layers:
                layers[layer][key] = value
    return [
        {
            "layer": layer,
            "hits": entry["hits"],
            "misses": entry["misses"],
            "hit_ratio": _ratio(entry["hits"], entry["hits"] + entry["misses"]),
            "items": entry.get("items"),
            "size_bytes": entry.get("size_bytes"),
        }
        for layer, entry in sorted(layers.items())
    ]
