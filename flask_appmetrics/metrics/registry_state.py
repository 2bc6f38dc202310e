"""Everything flask-appmetrics keeps per ``CollectorRegistry``, in one object.

One :class:`RegistryState` exists per registry, found with :func:`registry_state` (one
``WeakKeyDictionary`` and one lock for the process). It holds what every app recording
into that registry shares:

- the label length cap, which custom metrics declared before the first ``init_app`` (at
  module level) use too;
- the custom metrics declared in the registry (:mod:`flask_appmetrics.metrics.custom`);
- the cache layers registered, before or after the first ``init_app``;
- from the first ``init_app`` on: the catalog's :class:`~.catalog.MetricSet`, the
  scrape-time gauges, the users gauge (the users windows of its apps) and the
  :class:`SharedSeries` (bounded labels, quota, breakers).

Apps sharing a registry must agree, on every setting that shapes its series:
``APPMETRICS_BUCKETS``, ``APPMETRICS_MAX_LABEL_VALUES``, ``APPMETRICS_MAX_LABEL_LENGTH``,
``APPMETRICS_QUOTA_*`` and ``APPMETRICS_GEMINI_*``. One rule for all of them: ``init_app``
raises :class:`~flask_appmetrics.errors.ConfigurationError` naming the key when an app with
other values is alive on the registry; once none is, the later app's values apply (series
already recorded stay). "Alive" is as Python sees it: a Flask app sits in reference cycles,
so a dropped app counts until the garbage collector frees it, and ``init_app`` does not
force a collection. A test suite that changes these settings between tests on one registry
collects garbage between them (``gc.collect()``), or gives each app a registry of its own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ..errors import ConfigurationError, UnknownMetricError
from ..llm.budget import InMemorySpend
from ..llm.learned import InMemoryLearnedLimits
from ..llm.quota import InMemoryQuota, QuotaCounter, QuotaLimits, QuotaUsage
from ..llm.stores import LlmStores
from ..settings import SharedSettings
from .catalog import (
    BREAKER_STATES,
    CACHE_OPERATION_NAMES,
    QUOTA_LIMITS,
    TOKEN_TYPES,
    MetricSet,
    build_metric_set,
    catalog_specs,
    duration_spec,
    llm_family_set,
)
from .labels import LabelLength, PinnedLabel
from .registration import declare, register_collector
from .scrape_time import (
    HealthGauges,
    HealthSource,
    LlmReading,
    ScrapeTimeGauges,
    UsersGauge,
    UsersSource,
    ValueFunction,
)

logger = logging.getLogger("flask_appmetrics")


def agreed_values(buckets: tuple[float, ...], settings: SharedSettings) -> dict[str, object]:
    """The settings apps sharing a registry must agree on, by config key."""
    limits = settings.quota_limits
    return {
        "APPMETRICS_BUCKETS": buckets,
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
        "APPMETRICS_GEMINI_DAILY_BUDGET_USD": settings.gemini_daily_budget,
        "APPMETRICS_LLM_FAMILIES": frozenset(settings.llm_families),
    }


def _shown(value: Any) -> str:
    return repr(sorted(value)) if isinstance(value, frozenset) else repr(value)


class SharedSeries:
    """The series every app on one registry records into, with their label bounds and the
    quota they count against. Built by the registry's first ``init_app``.

    :param metric_set: the registry's catalog collectors.
    :param gauges: the registry's scrape-time gauges.
    :param settings: the registry's shared settings (those of its first app).
    :param quota: where quota usage is counted; an :class:`InMemoryQuota` if ``None``.
    :param length: the registry's label length cap.
    :param lock: the registry state's lock.
    :param llm: where spend and learned limits are kept; in process if ``None``.
    """

    def __init__(
        self,
        metric_set: MetricSet,
        gauges: ScrapeTimeGauges,
        settings: SharedSettings,
        quota: QuotaCounter | None,
        *,
        length: LabelLength,
        lock: threading.RLock,
        llm: LlmStores | None = None,
    ) -> None:
        self.metric_set = metric_set
        self._gauges = gauges
        self._lock = lock
        limit = settings.max_label_values
        self.label_length = length
        self.endpoint = PinnedLabel(limit, length)
        self.model = PinnedLabel(limit, length)
        self.cache_operation = PinnedLabel(limit, length)
        self.cache_operation.pin(CACHE_OPERATION_NAMES)
        self.cache_layer = PinnedLabel(limit, length)
        self.service = PinnedLabel(limit, length)
        self.quota_limits = QuotaLimits()
        self.quota: QuotaCounter = quota or InMemoryQuota(settings.quota_timezone)
        #: Whether :attr:`quota` is the registry's own in-process counter.
        self.own_quota = quota is None
        self._timezone = settings.quota_timezone
        self._services: set[str] = set()
        #: Today's spend and the limits learned from refusals (see :meth:`use_llm_stores`).
        self.llm: LlmStores = llm or self._local_llm_stores()
        #: Whether :attr:`llm` is the registry's own in-process pair.
        self.own_llm = llm is None
        #: The daily budget in USD, if one is configured.
        self.budget: float | None = settings.gemini_daily_budget
        self._set_limits(settings.quota_limits)
        # The counter is looked up at each scrape: a later app may bring its own.
        gauges.watch_quota(self._quota_reading)
        gauges.watch_llm(self._llm_reading)

    def reconfigure(self, settings: SharedSettings) -> None:
        """Apply a later app's settings (no app with the earlier ones is alive)."""
        for label in (self.endpoint, self.model, self.cache_operation, self.cache_layer):
            label.set_limit(settings.max_label_values)
        self.service.set_limit(settings.max_label_values)
        if self.own_quota and self._timezone != settings.quota_timezone:
            self.quota = InMemoryQuota(settings.quota_timezone)
        if self.own_llm and self._timezone != settings.quota_timezone:
            self.llm = LlmStores(InMemorySpend(settings.quota_timezone), self.llm.learned)
        self._timezone = settings.quota_timezone
        self._set_limits(settings.quota_limits)
        self.budget = settings.gemini_daily_budget

    def _local_llm_stores(self) -> LlmStores:
        return LlmStores(InMemorySpend(self._timezone), InMemoryLearnedLimits())

    def _llm_reading(self) -> LlmReading:
        learning = not self.quota_limits.items()
        learned = self.llm.learned.limits() if learning else ()
        return LlmReading(self.llm.spend.today(), self.budget, learned)

    def use_llm_stores(self, stores: LlmStores | None) -> None:
        """Keep the registry's spend and learned limits in *stores* from now on; in process
        if ``None``."""
        if stores is None:
            self.llm, self.own_llm = self._local_llm_stores(), True
        elif stores is not self.llm:
            self.llm, self.own_llm = stores, False

    def add_spend(self, usd: float) -> None:
        """Add an estimated cost to today's spend."""
        self.llm.spend.add(usd)

    def learn_call(self, model: str, tokens: int) -> None:
        """Count a call that went through, for the observed limits (while no quota limit is
        configured: the learned limits are not shown otherwise)."""
        if not self.quota_limits.items():
            self.llm.learned.note_call(model, tokens)

    def learn_refusal(self, model: str, limit: str, reported: int | None) -> None:
        """Learn from a 429 refusal (while no quota limit is configured)."""
        if not self.quota_limits.items():
            self.llm.learned.refused(model, limit, reported)

    def _set_limits(self, limits: QuotaLimits) -> None:
        configured = dict(limits.items())
        for name in QUOTA_LIMITS:
            if name in configured:
                self.metric_set.gauge("quota_limit").labels(name).set(configured[name])
                self.metric_set.counter("quota_exceeded_total").labels(name)
            elif name in dict(self.quota_limits.items()):
                self.metric_set.gauge("quota_limit").remove(name)
        self.quota_limits = limits

    def _quota_reading(self) -> tuple[QuotaUsage, QuotaLimits]:
        return self.quota.usage(), self.quota_limits

    def use_counter(self, quota: QuotaCounter | None) -> None:
        """Count the registry's quota usage in *quota* from now on (every app's); in an
        in-process counter of its own if ``None``."""
        if quota is None:
            self.quota, self.own_quota = InMemoryQuota(self._timezone), True
        elif quota is not self.quota:
            logger.info("flask-appmetrics: this registry's quota is now counted by %r", quota)
            self.quota, self.own_quota = quota, False

    def add_quota(self, requests: int, tokens: int) -> None:
        """Count usage against the quota and any limit it goes over."""
        usage = self.quota.add(requests, tokens)
        for name in self.quota_limits.exceeded(usage):
            # Only the dimensions this record added to: a token-only record is not a
            # request over the RPM.
            if (requests if name in ("rpm", "rpd") else tokens) > 0:
                self.metric_set.counter("quota_exceeded_total").labels(name).inc()

    def pin_gemini(self, endpoints: Iterable[str], models: Iterable[str]) -> None:
        """Keep the configured endpoint and model values and create their series at 0."""
        # Capped like every value recorded later, so that those land on these series.
        endpoints = tuple(self.label_length(value) for value in endpoints)
        models = tuple(self.label_length(value) for value in models)
        self.endpoint.pin(endpoints)
        self.model.pin(models)
        ms = self.metric_set
        if not ms.has("gemini_api_calls_total"):
            return
        for endpoint in endpoints:
            for model in models:
                ms.counter("gemini_api_rejected_calls_total").labels(endpoint, model)
                for status in ("success", "error"):
                    ms.counter("gemini_api_calls_total").labels(endpoint, model, status)
                ms.counter("gemini_api_tokens_total").labels(endpoint, model)
                ms.histogram("gemini_api_duration_seconds").labels(endpoint, model)
                ms.counter("gemini_api_cost_usd_total").labels(endpoint, model)
                for token_type in TOKEN_TYPES:
                    ms.counter("gemini_api_token_usage_total").labels(endpoint, model, token_type)

    def breaker_service(self, service: str) -> str:
        """The bounded label value for *service*, its series created at 0 on first use."""
        label = self.service(service)
        if label not in self._services:
            with self._lock:
                if label not in self._services:
                    self._create_service_series(label)
                    self._services.add(label)
        return label

    def _create_service_series(self, service: str) -> None:
        ms = self.metric_set
        ms.counter("circuit_breaker_failures_total").labels(service)
        ms.counter("circuit_breaker_successes_total").labels(service)
        ms.counter("circuit_breaker_rejected_calls_total").labels(service)
        for state in BREAKER_STATES:
            ms.counter("circuit_breaker_transitions_total").labels(service, state)

    def register_layer(
        self, layer: str, size_bytes: ValueFunction | None, items: ValueFunction | None
    ) -> str:
        """Report *layer*'s size and item count from callables, read at scrape time.

        Registering a layer again replaces its callables. Returns the label value used.
        """
        label = self.cache_layer(layer)
        self._gauges.set_layer(label, size_bytes, items)
        for result in ("hit", "miss"):
            self.metric_set.counter("cache_layer_operations_total").labels(label, "get", result)
        return label


class RegistryState:
    """What flask-appmetrics keeps for one registry (see the module docstring).

    :param registry: the registry, held weakly (the map of states is keyed by it).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = weakref.ref(registry)
        #: Guards every field below; reentrant, as declaring a custom metric may create
        #: its series under it.
        self.lock = threading.RLock()
        #: The length cap of label values, shared by every bounded label of the registry.
        self.label_length = LabelLength()
        #: Custom metrics declared in this registry, by name
        #: (:func:`flask_appmetrics.metrics.custom.declare_metric` owns the values).
        self.custom_metrics: dict[str, object] = {}
        self._layers: dict[str, tuple[ValueFunction | None, ValueFunction | None]] = {}
        self._metric_set: MetricSet | None = None
        self._gauges: ScrapeTimeGauges | None = None
        self._users: UsersGauge | None = None
        self._health: HealthGauges | None = None
        self._series: SharedSeries | None = None
        # The settings in force (see agreed_values), and the apps using them, held weakly.
        self._agreed: dict[str, object] | None = None
        self._apps: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Whether input refused now is raised (``APPMETRICS_STRICT`` of the app recording:
        #: the one in context, else the most recent). Only the extension knows which app
        #: that is; ``init_app`` gives it here, so custom metrics need no app state.
        self.strict: Callable[[], bool] = _never_strict

    @property
    def registry(self) -> CollectorRegistry:
        registry = self._registry()
        if registry is None:  # pragma: no cover - only reachable through a dead app's leftovers
            raise RuntimeError("this registry no longer exists")
        return registry

    @property
    def metric_set(self) -> MetricSet | None:
        """The catalog's collectors, once an app was initialised on the registry."""
        return self._metric_set

    @property
    def scrape_time(self) -> ScrapeTimeGauges | None:
        """The scrape-time gauges, once an app was initialised on the registry."""
        return self._gauges

    @property
    def health_gauges(self) -> HealthGauges | None:
        """The health families' collector, once an app was initialised on the registry."""
        return self._health

    @property
    def series(self) -> SharedSeries | None:
        """The shared series, once an app was initialised on the registry."""
        return self._series

    # -- apps sharing the registry -----------------------------------------------------

    def check(self, buckets: tuple[float, ...], settings: SharedSettings) -> bool:
        """Whether *settings* differ from those in force (then no app using those is alive).

        :raises ConfigurationError: they differ from those of an app still alive, naming
            the first key that differs.
        """
        with self.lock:
            ours = self._agreed
            live = list(self._apps)
        if ours is None:
            return False
        theirs = agreed_values(buckets, settings)
        differing = [key for key in ours if theirs[key] != ours[key]]
        if not differing:
            return False
        if live:
            key = differing[0]
            raise ConfigurationError(
                key,
                f"{_shown(theirs[key])} differs from {_shown(ours[key])}, the value of app "
                f"{live[0].name!r} sharing this registry (apps sharing a registry share its "
                "series, label caps and quota: configure them alike, or give this app a "
                "registry of its own)",
            )
        return True

    def metric_set_for(self, buckets: tuple[float, ...], settings: SharedSettings) -> MetricSet:
        """The registry's metric set, built (with its scrape-time gauges) for the first app;
        a later app's settings apply once no app with others is alive.

        :raises ConfigurationError: the settings differ from those of an app still alive.
        :raises MetricConflictError: a family name is taken by an incompatible collector.
        """
        with self.lock:
            if self.check(buckets, settings):
                self._reconfigure(buckets, settings)
            if self._metric_set is None:
                registry = self.registry
                gauges = ScrapeTimeGauges(self.count_internal_error)
                gauges.llm_families = settings.llm_families
                register_collector(registry, gauges, gauges.names())
                health = HealthGauges(self.count_internal_error)
                try:
                    register_collector(registry, health, health.names())
                except BaseException:
                    registry.unregister(gauges)
                    raise
                try:
                    # All or nothing: a conflict leaves none of our collectors behind.
                    metric_set = build_metric_set(registry, buckets, settings.llm_families)
                except BaseException:
                    registry.unregister(gauges)
                    registry.unregister(health)
                    raise
                gauges.count_hits(metric_set.counter("cache_operations_total"))
                self._users = UsersGauge(
                    metric_set.gauge("concurrent_users"), metric_set.count_internal_error
                )
                self._metric_set, self._gauges, self._health = metric_set, gauges, health
                self._agreed = agreed_values(buckets, settings)
                self.label_length.max_length = settings.max_label_length
            return self._metric_set

    def shared_series(
        self,
        app: object,
        settings: SharedSettings,
        quota: QuotaCounter | None,
        *,
        llm: LlmStores | None = None,
    ) -> SharedSeries:
        """The registry's :class:`SharedSeries`, built on the first call (after
        :meth:`metric_set_for`), with *app* noted as using the settings in force.

        An explicit *quota* counter replaces the registry's: every app's usage is counted
        there from now on. Without one, apps share the registry's counter; once the apps
        that brought a counter are gone, an in-process one again. The same goes for *llm*,
        where spend and learned limits are kept (Redis-shared when the app has Redis).
        """
        with self.lock:
            series = self._series
            if series is None:
                assert self._metric_set is not None, "metric_set_for comes first"
                assert self._gauges is not None
                series = SharedSeries(
                    self._metric_set,
                    self._gauges,
                    settings,
                    quota,
                    length=self.label_length,
                    lock=self.lock,
                    llm=llm,
                )
                for layer, (size_bytes, items) in self._layers.items():
                    series.register_layer(layer, size_bytes, items)
                self._series = series
            else:
                alone = not list(self._apps)
                if quota is not None:
                    series.use_counter(quota)
                elif not series.own_quota and alone:
                    # The apps that brought the counter are gone: count in process again.
                    series.use_counter(None)
                if llm is not None:
                    series.use_llm_stores(llm)
                elif not series.own_llm and alone:
                    series.use_llm_stores(None)
            self._apps.add(app)
            return series

    def _reconfigure(self, buckets: tuple[float, ...], settings: SharedSettings) -> None:
        # No live app uses the settings in force: the new ones apply. Series already
        # recorded stay (a registry cannot forget them); label values kept stay kept.
        logger.info(
            "flask-appmetrics: this registry's shared settings change to those of a later "
            "app (no app with the earlier ones is alive)"
        )
        metric_set = self._metric_set
        if metric_set is not None and metric_set.buckets != buckets:
            registry = self.registry
            registry.unregister(metric_set.metrics["http_request_duration_seconds"])
            duration = declare(registry, duration_spec(buckets))
            metric_set.metrics["http_request_duration_seconds"] = duration
            metric_set.buckets = buckets
        if metric_set is not None:
            self._switch_llm_families(metric_set, settings.llm_families)
        self.label_length.max_length = settings.max_label_length
        if self._series is not None:
            self._series.reconfigure(settings)
        self._agreed = agreed_values(buckets, settings)

    def _switch_llm_families(self, metric_set: MetricSet, families: frozenset[str]) -> None:
        """Register the LLM families of the sets now on, unregister those of the sets off."""
        registry = self.registry
        wanted = {
            spec.name: spec
            for spec in catalog_specs(metric_set.buckets, families)
            if llm_family_set(spec.name) is not None
        }
        for name in [n for n in metric_set.metrics if llm_family_set(n) is not None]:
            if name not in wanted:
                registry.unregister(metric_set.metrics.pop(name))
        for name, spec in wanted.items():
            if name not in metric_set.metrics:
                metric_set.metrics[name] = declare(registry, spec)
        if self._gauges is not None:
            self._gauges.llm_families = families

    # -- before or after the first app ---------------------------------------------------

    def register_layer(
        self, layer: str, size_bytes: ValueFunction | None, items: ValueFunction | None
    ) -> None:
        """Report *layer*'s sizes now, or from the registry's first ``init_app``."""
        with self.lock:
            self._layers[layer] = (size_bytes, items)
            series = self._series
            if series is not None:
                series.register_layer(layer, size_bytes, items)

    def count_users_of(self, source: UsersSource) -> None:
        """Count *source*'s distinct users in ``concurrent_users`` while it is alive (after
        :meth:`metric_set_for`)."""
        with self.lock:
            assert self._users is not None, "metric_set_for comes first"
            self._users.add(source)

    def report_health_of(self, source: HealthSource) -> None:
        """Export *source*'s checks and verdict in the health families while it is alive
        (after :meth:`metric_set_for`)."""
        with self.lock:
            assert self._health is not None, "metric_set_for comes first"
            self._health.add(source)

    def count_internal_error(self, component: str) -> None:
        """Count a failure of the extension, once the registry has its metric set."""
        metric_set = self._metric_set
        if metric_set is not None:
            metric_set.count_internal_error(component)

    def catalog_metric(
        self, name: str, *, buckets: tuple[float, ...]
    ) -> Counter | Gauge | Histogram:
        """The collector of the catalog family *name*, in either order of setup.

        After ``init_app`` it is the collector the extension records into. Before, it is
        registered now from the catalog's definition (a histogram with *buckets*), and
        ``init_app`` adopts it later. Either way app code and the extension count into the
        same series, which a ``Counter(...)`` of the same name made after ``init_app``
        cannot do: prometheus_client refuses it (``Duplicated timeseries``).

        :raises UnknownMetricError: *name* is not a family of the catalog.
        :raises MetricConflictError: the name is taken by an incompatible collector.
        """
        with self.lock:
            metric_set = self._metric_set
            if metric_set is not None and name in metric_set.metrics:
                return metric_set.metrics[name]
            specs = {spec.name: spec for spec in catalog_specs(buckets)}
            spec = specs.get(name)
            if spec is None:
                raise UnknownMetricError(name, sorted(specs))
            return declare(self.registry, spec)


_states: weakref.WeakKeyDictionary[CollectorRegistry, RegistryState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def registry_state(registry: CollectorRegistry) -> RegistryState:
    """The :class:`RegistryState` of *registry*, made on first use."""
    with _states_lock:
        state = _states.get(registry)
        if state is None:
            state = _states[registry] = RegistryState(registry)
        return state


class RegistryBound:
    """Base of the extension's registry-wide methods: the registries it records into."""

    _registry: CollectorRegistry | None
    #: The registries given to ``init_app`` other than :attr:`registry`, while they live.
    _app_registries: weakref.WeakSet[CollectorRegistry]

    @property
    def registry(self) -> CollectorRegistry:
        """The registry this extension records into: ``prometheus_client.REGISTRY`` unless
        another one was given; an app initialised with a registry of its own records into
        that one."""
        return self._registry if self._registry is not None else REGISTRY

    def _app_registry_list(self) -> list[CollectorRegistry]:
        """The registries of this extension's apps that were given their own, while they
        live."""
        return list(self._app_registries)

    def _registry_now(self) -> CollectorRegistry | None:
        """The registry a call records into now, when not :attr:`registry`: the app
        recording's own. Only the extension knows which app that is; here, never."""
        return None


def _never_strict() -> bool:
    """Strict mode before any ``init_app`` on the registry: off, as the default."""
    return False
