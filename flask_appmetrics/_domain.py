"""Per-registry state of the domain metrics: bounded labels, the quota, cache layers.

One :class:`DomainMetrics` exists per ``CollectorRegistry`` (like the catalog's
``MetricSet``), shared by every app recording into that registry, so that label bounds
cap the registry's series, not each app's. Values that are derived (quota usage and
remaining, cache sizes) are computed when the registry is collected.
"""

from __future__ import annotations

import logging
import math
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.samples import Sample

from ._domain_specs import BREAKER_STATES, QUOTA_LIMITS, TOKEN_TYPES
from ._labels import BoundedLabel
from ._quota import InMemoryQuota, QuotaCounter, QuotaLimits, QuotaUsage

if TYPE_CHECKING:
    from .catalog import MetricSet
    from .config import DomainSettings

logger = logging.getLogger("flask_appmetrics")

#: Returns a gauge's value at scrape time, or ``None`` for no sample.
ValueFunction = Callable[[], "float | None"]


class PinnedLabel:
    """A :class:`BoundedLabel` whose configured (pinned) values are always kept as they are
    and do not use up the cap."""

    def __init__(self, limit: int) -> None:
        self._pinned: frozenset[str] = frozenset()
        self._others = BoundedLabel(limit)
        self._lock = threading.Lock()

    def pin(self, values: Iterable[str]) -> None:
        with self._lock:
            self._pinned = self._pinned | frozenset(values)

    def __call__(self, value: str) -> str:
        return value if value in self._pinned else self._others(value)


def scrape_time(gauge: Gauge, value: ValueFunction, on_error: Callable[[str], None]) -> None:
    """Make *gauge* (a child, or a family without labels) report ``value()`` when collected.

    Like ``Gauge.set_function``, but a function that returns ``None`` or raises yields no
    sample instead of breaking the whole scrape; a failure is logged and reported to
    *on_error*.
    """

    def samples(_: Gauge) -> Iterable[Sample]:
        try:
            result = value()
            if result is None:
                return ()
            # Inside the try: a string, an object or an int beyond float's range must cost
            # this sample, not the whole scrape.
            number = float(result)
        except Exception:
            logger.exception("flask-appmetrics: a scrape-time value failed; sample skipped")
            on_error("scrape_value")
            return ()
        return (Sample("", {}, number, None, None),)

    # The same hook set_function uses; kept private there too.
    gauge._child_samples = types.MethodType(samples, gauge)  # type: ignore[method-assign]


class DomainMetrics:
    """The domain metrics of one registry.

    :param metric_set: the registry's catalog.
    :param settings: the settings of the first app (see :meth:`configure_quota` for later
        ones).
    :param quota: where quota usage is counted; an :class:`InMemoryQuota` if ``None``.
    """

    def __init__(
        self, metric_set: MetricSet, settings: DomainSettings, quota: QuotaCounter | None
    ) -> None:
        self.metric_set = metric_set
        limit = settings.max_label_values
        self.endpoint = PinnedLabel(limit)
        self.model = PinnedLabel(limit)
        self.cache_operation = PinnedLabel(limit)
        self.cache_operation.pin(("get", "set", "delete"))
        self.cache_layer = PinnedLabel(limit)
        self.service = PinnedLabel(limit)
        self.quota_limits = settings.quota_limits
        self.quota_timezone = settings.quota_timezone
        self.quota: QuotaCounter = quota or InMemoryQuota(settings.quota_timezone)
        self._own_quota = quota is None
        self._layers: dict[str, tuple[ValueFunction | None, ValueFunction | None]] = {}
        self._services: set[str] = set()
        self._lock = threading.Lock()
        self._install_quota_gauges()

    # -- quota -----------------------------------------------------------------------

    def configure_quota(self, settings: DomainSettings, quota: QuotaCounter | None) -> None:
        """Apply the quota settings of a later app sharing this registry.

        The registry has one set of quota gauges, so the most recently initialised app's
        limits (and counter, and time zone) apply, as for the helpers: in a test suite
        that makes an app per test on the default registry, the app under test. A change
        is logged, since two live apps with different limits share one quota here.
        """
        zone_changed = settings.quota_timezone != self.quota_timezone
        if settings.quota_limits != self.quota_limits or zone_changed:
            logger.warning(
                "flask-appmetrics: this registry's quota limits change from %s (%s) to %s (%s): "
                "apps sharing a registry share one quota, and the latest app's limits apply",
                self.quota_limits,
                self.quota_timezone,
                settings.quota_limits,
                settings.quota_timezone,
            )
        if quota is not None:
            if quota is not self.quota:
                self.quota, self._own_quota = quota, False
        elif zone_changed or not self._own_quota:
            # The latest app counts in process: a fresh counter in its zone.
            self.quota, self._own_quota = InMemoryQuota(settings.quota_timezone), True
        self.quota_timezone = settings.quota_timezone
        self._set_limits(settings.quota_limits)

    def _install_quota_gauges(self) -> None:
        ms = self.metric_set
        on_error = ms.count_internal_error
        # One read of the counter per scrape and gauge: each is O(1) under one lock. The
        # counter and limits are looked up at each scrape: a later app may replace them.
        readers: dict[str, Callable[[QuotaUsage], float | None]] = {
            "quota_requests_current_minute": lambda u: u.requests_minute,
            "quota_tokens_current_minute": lambda u: u.tokens_minute,
            "quota_requests_today": lambda u: u.requests_today,
            "quota_tokens_today": lambda u: u.tokens_today,
            "quota_rpm_remaining": lambda u: _remaining(self.quota_limits.rpm, u.requests_minute),
            "quota_tpm_remaining": lambda u: _remaining(self.quota_limits.tpm, u.tokens_minute),
        }
        for name, read in readers.items():
            scrape_time(ms.gauge(name), self._reading(read), on_error)
        self._set_limits(self.quota_limits)

    def _reading(self, read: Callable[[QuotaUsage], float | None]) -> ValueFunction:
        return lambda: read(self.quota.usage())

    def _set_limits(self, limits: QuotaLimits) -> None:
        ms = self.metric_set
        configured = dict(limits.items())
        for name in QUOTA_LIMITS:
            if name in configured:
                ms.gauge("quota_limit").labels(name).set(configured[name])
                ms.counter("quota_exceeded_total").labels(name)
            elif name in dict(self.quota_limits.items()):
                ms.gauge("quota_limit").remove(name)
        self.quota_limits = limits

    def add_quota(self, requests: int, tokens: int) -> None:
        """Count usage against the quota and any limit it goes over."""
        usage = self.quota.add(requests, tokens)
        for name in self.quota_limits.exceeded(usage):
            # Only the dimensions this record added to: a token-only record is not a
            # request over the RPM.
            if (requests if name in ("rpm", "rpd") else tokens) > 0:
                self.metric_set.counter("quota_exceeded_total").labels(name).inc()

    # -- Gemini ----------------------------------------------------------------------

    def pin_gemini(self, endpoints: Iterable[str], models: Iterable[str]) -> None:
        """Keep the configured endpoint and model values and create their series at 0."""
        endpoints, models = tuple(endpoints), tuple(models)
        self.endpoint.pin(endpoints)
        self.model.pin(models)
        ms = self.metric_set
        for endpoint in endpoints:
            for model in models:
                for status in ("success", "error"):
                    ms.counter("gemini_api_calls_total").labels(endpoint, model, status)
                ms.counter("gemini_api_tokens_total").labels(endpoint, model)
                ms.histogram("gemini_api_duration_seconds").labels(endpoint, model)
                ms.counter("gemini_api_cost_usd_total").labels(endpoint, model)
                for token_type in TOKEN_TYPES:
                    ms.counter("gemini_api_token_usage_total").labels(endpoint, model, token_type)

    # -- circuit breakers ------------------------------------------------------------

    def breaker_service(self, service: str) -> str:
        """The bounded label value for *service*, its series created at 0 on first use."""
        label = self.service(service)
        if label not in self._services:
            with self._lock:
                if label not in self._services:
                    self._seed_service(label)
                    self._services.add(label)
        return label

    def _seed_service(self, service: str) -> None:
        ms = self.metric_set
        ms.counter("circuit_breaker_failures_total").labels(service)
        ms.counter("circuit_breaker_successes_total").labels(service)
        ms.counter("circuit_breaker_rejected_calls_total").labels(service)
        for state in BREAKER_STATES:
            ms.counter("circuit_breaker_transitions_total").labels(service, state)

    # -- cache layers ----------------------------------------------------------------

    def register_layer(
        self, layer: str, size_bytes: ValueFunction | None, items: ValueFunction | None
    ) -> str:
        """Report *layer*'s size and item count from callables, read at scrape time.

        Registering a layer again replaces its callables. Returns the label value used.
        """
        label = self.cache_layer(layer)
        ms = self.metric_set
        with self._lock:
            self._layers[label] = (size_bytes, items)
        for family, function in (("cache_size_bytes", size_bytes), ("cache_items_count", items)):
            if function is not None:
                scrape_time(ms.gauge(family).labels(label), function, ms.count_internal_error)
        for operation in ("get",):
            for result in ("hit", "miss"):
                ms.counter("cache_layer_operations_total").labels(label, operation, result)
        return label


def _remaining(limit: int | None, used: int) -> float:
    # An unlimited quota has infinitely many left: +Inf keeps the seed's six gauges on the
    # page and makes "remaining < N" alerts false, where a missing sample would hide it.
    return math.inf if limit is None else float(max(limit - used, 0))


_domains: weakref.WeakKeyDictionary[CollectorRegistry, DomainMetrics] = weakref.WeakKeyDictionary()
# Layers registered before the registry's first init_app, applied when it happens.
_pending_layers: weakref.WeakKeyDictionary[
    CollectorRegistry, dict[str, tuple[ValueFunction | None, ValueFunction | None]]
] = weakref.WeakKeyDictionary()
_domains_lock = threading.Lock()


def domain_for(
    metric_set: MetricSet, settings: DomainSettings, quota: QuotaCounter | None = None
) -> DomainMetrics:
    """The registry's :class:`DomainMetrics`, built on first use; a later app's quota
    settings and counter replace the earlier ones (see :meth:`DomainMetrics.configure_quota`).
    """
    with _domains_lock:
        domain = _domains.get(metric_set.registry)
        if domain is None:
            domain = DomainMetrics(metric_set, settings, quota)
            for layer, (size_bytes, items) in _pending_layers.pop(metric_set.registry, {}).items():
                domain.register_layer(layer, size_bytes, items)
            _domains[metric_set.registry] = domain
            return domain
        domain.configure_quota(settings, quota)
        return domain


def existing_domain(registry: CollectorRegistry) -> DomainMetrics | None:
    """The registry's :class:`DomainMetrics` if one was built."""
    with _domains_lock:
        return _domains.get(registry)


def register_cache_layer(
    registry: CollectorRegistry,
    layer: str,
    *,
    size_bytes: ValueFunction | None = None,
    items: ValueFunction | None = None,
) -> None:
    """Register a cache layer's scrape-time size callables for *registry* (now, or when
    its first app is initialised).

    :raises TypeError: *layer* is not a non-empty string or a callable is not callable.
    """
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"layer: expected a non-empty string, got {layer!r}")
    for field, function in (("size_bytes", size_bytes), ("items", items)):
        if function is not None and not callable(function):
            raise TypeError(f"{field}: expected a callable, got {function!r}")
    with _domains_lock:
        domain = _domains.get(registry)
        if domain is None:
            _pending_layers.setdefault(registry, {})[layer] = (size_bytes, items)
            return
    domain.register_layer(layer, size_bytes, items)
