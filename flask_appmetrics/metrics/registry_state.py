"""Per-registry state of the domain metrics: bounded labels, the quota, cache layers.

One :class:`DomainMetrics` exists per ``CollectorRegistry`` (like the catalog's
``MetricSet``), shared by every app recording into that registry, so that label bounds
cap the registry's series, not each app's. So the apps alive on a registry must agree on
``APPMETRICS_MAX_LABEL_VALUES``, ``APPMETRICS_MAX_LABEL_LENGTH``, ``APPMETRICS_QUOTA_*`` and
``APPMETRICS_GEMINI_*``, as on ``APPMETRICS_BUCKETS``: ``init_app`` raises
:class:`~flask_appmetrics.errors.ConfigurationError` otherwise. Values that are derived
(quota usage and remaining, cache sizes) are computed when the registry is collected, the
quota counter read once per scrape.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.samples import Sample

from ..errors import ConfigurationError
from ..llm.quota import InMemoryQuota, QuotaCounter, QuotaLimits, QuotaUsage
from .labels import BoundedLabel, LabelLength
from .llm_families import BREAKER_STATES, QUOTA_LIMITS, TOKEN_TYPES

if TYPE_CHECKING:
    from flask import Flask

    from ..settings import DomainSettings
    from .catalog import MetricSet

logger = logging.getLogger("flask_appmetrics")

#: Returns a gauge's value at scrape time, or ``None`` for no sample.
ValueFunction = Callable[[], "float | None"]


class PinnedLabel:
    """A :class:`BoundedLabel` whose configured (pinned) values are always kept as they are
    and do not use up the cap. Every value, pinned ones included, is capped in length."""

    def __init__(self, limit: int, length: LabelLength | None = None) -> None:
        self._pinned: frozenset[str] = frozenset()
        self._others = BoundedLabel(limit, length=length)
        self._length = self._others.length
        self._lock = threading.Lock()

    def pin(self, values: Iterable[str]) -> None:
        with self._lock:
            self._pinned = self._pinned | frozenset(self._length(value) for value in values)

    def set_limit(self, limit: int) -> None:
        """Keep up to *limit* unpinned values from now on (those already kept stay)."""
        self._others.limit = limit

    def __call__(self, value: str) -> str:
        value = self._length(value)
        return value if value in self._pinned else self._others.admit(value)


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


class _UsagePerScrape:
    """One ``quota.usage()`` per scrape for the six quota gauges (with Redis, one round
    trip instead of six).

    prometheus_client gives a collector no handle on the scrape it serves, so a scrape is
    recognised as a thread collecting the gauges in turn: a reading is reused by each gauge
    once, within :data:`MAX_AGE` seconds. A gauge that read it already (the next scrape),
    or a reading that old, reads the counter again. Per thread, so concurrent scrapes each
    read their own.
    """

    #: A filtered scrape (``?name[]=``) may collect only some of the gauges: the others
    #: then reuse the reading for at most this long.
    MAX_AGE = 0.1

    def __init__(self, read: Callable[[], QuotaUsage]) -> None:
        self._read = read
        self._local = threading.local()

    def usage(self, gauge: str) -> QuotaUsage:
        local = self._local
        consumed: set[str] | None = getattr(local, "consumed", None)
        now = time.monotonic()
        if consumed is None or gauge in consumed or now - local.at > self.MAX_AGE:
            local.usage, local.at = self._read(), now
            local.consumed = consumed = set()
        consumed.add(gauge)
        usage: QuotaUsage = local.usage
        return usage


def _setting_values(settings: DomainSettings) -> dict[str, object]:
    """*settings* by the config key each field comes from, as compared between apps."""
    limits = settings.quota_limits
    return {
        "APPMETRICS_MAX_LABEL_VALUES": settings.max_label_values,
        "APPMETRICS_MAX_LABEL_LENGTH": settings.max_label_length,
        "APPMETRICS_QUOTA_RPM": limits.rpm,
        "APPMETRICS_QUOTA_TPM": limits.tpm,
        "APPMETRICS_QUOTA_RPD": limits.rpd,
        "APPMETRICS_QUOTA_TPD": limits.tpd,
        "APPMETRICS_QUOTA_TIMEZONE": settings.quota_timezone,
        # Sets: the order of the configured values changes nothing.
        "APPMETRICS_GEMINI_ENDPOINTS": frozenset(settings.gemini_endpoints),
        "APPMETRICS_GEMINI_MODELS": frozenset(settings.gemini_models),
        "APPMETRICS_GEMINI_PRICES": dict(settings.gemini_prices),
    }


def _shown(value: Any) -> str:
    return repr(sorted(value)) if isinstance(value, frozenset) else repr(value)


class DomainMetrics:
    """The domain metrics of one registry.

    Every app sharing the registry shares them, so every live app must be configured
    alike: see :meth:`configure`.

    :param metric_set: the registry's catalog.
    :param settings: the settings of the first app.
    :param quota: where quota usage is counted; an :class:`InMemoryQuota` if ``None``.
    """

    def __init__(
        self, metric_set: MetricSet, settings: DomainSettings, quota: QuotaCounter | None
    ) -> None:
        self.metric_set = metric_set
        self.settings = settings
        limit = settings.max_label_values
        # Shared with the registry's custom metrics (see label_length_for).
        self.label_length = label_length_for(metric_set.registry)
        self.label_length.max_length = settings.max_label_length
        length = self.label_length
        self.endpoint = PinnedLabel(limit, length)
        self.model = PinnedLabel(limit, length)
        self.cache_operation = PinnedLabel(limit, length)
        self.cache_operation.pin(("get", "set", "delete"))
        self.cache_layer = PinnedLabel(limit, length)
        self.service = PinnedLabel(limit, length)
        self.quota_limits = settings.quota_limits
        self.quota_timezone = settings.quota_timezone
        self.quota: QuotaCounter = quota or InMemoryQuota(settings.quota_timezone)
        self._own_quota = quota is None
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._layers: dict[str, tuple[ValueFunction | None, ValueFunction | None]] = {}
        self._services: set[str] = set()
        self._lock = threading.Lock()
        self._install_quota_gauges()

    # -- apps sharing the registry -----------------------------------------------------

    def attach(self, app: Flask) -> None:
        """Note that *app* records here (held weakly), with the current settings."""
        self._apps.add(app)

    def configure(self, settings: DomainSettings, quota: QuotaCounter | None) -> None:
        """Check the settings of a later app sharing this registry, and take its counter.

        The registry has one label cap, one set of pinned Gemini labels and prices, and
        one quota (limits, time zone, gauges), so apps sharing it must agree on them, as on
        ``APPMETRICS_BUCKETS``. Only live apps count: once every app configured otherwise
        is gone (a test suite's app per test on the default registry), the later app's
        settings replace theirs.

        An explicit *quota* counter replaces the registry's (every app's usage is counted
        there from now on); without one, apps share the registry's in-process counter.

        :raises ConfigurationError: naming the first key whose value differs from that of
            an app still alive.
        """
        if self.check(settings):
            self._reconfigure(settings)
        if quota is not None and quota is not self.quota:
            logger.info("flask-appmetrics: this registry's quota is now counted by %r", quota)
            self.quota, self._own_quota = quota, False
        elif quota is None and not self._own_quota and not self._live_apps():
            # The apps that brought the counter are gone: count in process again.
            self.quota, self._own_quota = InMemoryQuota(settings.quota_timezone), True

    def check(self, settings: DomainSettings) -> bool:
        """Whether *settings* differ from the registry's (then no app using those is alive).

        :raises ConfigurationError: they differ from those of an app still alive.
        """
        ours, theirs = _setting_values(self.settings), _setting_values(settings)
        differing = [key for key in ours if ours[key] != theirs[key]]
        if not differing:
            return False
        live = self._live_apps()
        if live:
            key = differing[0]
            raise ConfigurationError(
                key,
                f"{_shown(theirs[key])} differs from {_shown(ours[key])}, the value of "
                f"app {live[0].name!r} sharing this registry (apps sharing a registry "
                "share its domain metrics and quota: configure them alike, or give "
                "this app a registry of its own)",
            )
        return True

    def _live_apps(self) -> list[Flask]:
        apps = list(self._apps)
        if apps:
            # A Flask app is part of reference cycles (its bound view functions): only the
            # cycle collector frees one that is otherwise gone. Rare: a change of settings
            # or of counter at start.
            del apps
            gc.collect()
            apps = list(self._apps)
        return apps

    def _reconfigure(self, settings: DomainSettings) -> None:
        # No live app uses the old settings: the new ones apply. Series already recorded
        # stay (a registry cannot forget them); label values already kept stay kept.
        logger.info(
            "flask-appmetrics: this registry's domain settings change to those of a later "
            "app (no app with the earlier ones is alive)"
        )
        labels = (self.endpoint, self.model, self.cache_operation, self.cache_layer, self.service)
        for label in labels:
            label.set_limit(settings.max_label_values)
        self.label_length.max_length = settings.max_label_length
        if settings.quota_timezone != self.quota_timezone and self._own_quota:
            self.quota = InMemoryQuota(settings.quota_timezone)
        self.quota_timezone = settings.quota_timezone
        self._set_limits(settings.quota_limits)
        self.settings = settings

    # -- quota -----------------------------------------------------------------------

    def _install_quota_gauges(self) -> None:
        ms = self.metric_set
        on_error = ms.count_internal_error
        # One read of the counter per scrape for all six gauges; each gauge is O(1). The
        # counter and limits are looked up at each scrape: a later app may replace them.
        per_scrape = _UsagePerScrape(self._usage_now)
        readers: dict[str, Callable[[QuotaUsage], float | None]] = {
            "quota_requests_current_minute": lambda u: u.requests_minute,
            "quota_tokens_current_minute": lambda u: u.tokens_minute,
            "quota_requests_today": lambda u: u.requests_today,
            "quota_tokens_today": lambda u: u.tokens_today,
            "quota_rpm_remaining": lambda u: _remaining(self.quota_limits.rpm, u.requests_minute),
            "quota_tpm_remaining": lambda u: _remaining(self.quota_limits.tpm, u.tokens_minute),
        }
        for name, read in readers.items():
            scrape_time(ms.gauge(name), _reading(per_scrape, name, read), on_error)
        self._set_limits(self.quota_limits)

    def _usage_now(self) -> QuotaUsage:
        return self.quota.usage()  # the counter of the moment: a later app may bring one

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
        # Capped like every value recorded later, so that those land on these series.
        endpoints = tuple(self.label_length(value) for value in endpoints)
        models = tuple(self.label_length(value) for value in models)
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


def _reading(
    per_scrape: _UsagePerScrape, gauge: str, read: Callable[[QuotaUsage], float | None]
) -> ValueFunction:
    return lambda: read(per_scrape.usage(gauge))


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
_label_lengths: weakref.WeakKeyDictionary[CollectorRegistry, LabelLength] = (
    weakref.WeakKeyDictionary()
)
_label_lengths_lock = threading.Lock()


def label_length_for(registry: CollectorRegistry) -> LabelLength:
    """The length cap of *registry*'s label values: the default until an app sets it.

    One object per registry, so that custom metrics declared before the first ``init_app``
    (at module level) follow ``APPMETRICS_MAX_LABEL_LENGTH`` once it is read.
    """
    with _label_lengths_lock:
        length = _label_lengths.get(registry)
        if length is None:
            length = _label_lengths[registry] = LabelLength()
        return length


def domain_for(
    metric_set: MetricSet, settings: DomainSettings, quota: QuotaCounter | None = None
) -> DomainMetrics:
    """The registry's :class:`DomainMetrics`, built on first use and checked against a
    later app's settings (see :meth:`DomainMetrics.configure`).

    :raises ConfigurationError: a live app sharing the registry has other domain settings.
    """
    with _domains_lock:
        domain = _domains.get(metric_set.registry)
        if domain is None:
            domain = DomainMetrics(metric_set, settings, quota)
            for layer, (size_bytes, items) in _pending_layers.pop(metric_set.registry, {}).items():
                domain.register_layer(layer, size_bytes, items)
            _domains[metric_set.registry] = domain
            return domain
        domain.configure(settings, quota)
        return domain


def check_domain_settings(registry: CollectorRegistry, settings: DomainSettings) -> None:
    """Raise the error :func:`domain_for` would for *settings*, before anything is set up.

    :raises ConfigurationError: a live app sharing *registry* has other domain settings.
    """
    domain = existing_domain(registry)
    if domain is not None:
        domain.check(settings)


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
