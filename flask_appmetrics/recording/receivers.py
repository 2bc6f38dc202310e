"""The extension's signal receivers: record signal payloads into the app's metrics.

One :class:`SignalReceivers` serves one app. It is connected to each signal of
:mod:`flask_appmetrics.signals` with ``sender=app`` (events of other apps are not ours)
and ``weak=False`` (blinker would otherwise drop the bound methods of an object nothing
else holds). It holds its app weakly, so blinker's strong reference does not keep an app
alive, and disconnects itself when the app is collected.

Every payload is validated in full before anything is recorded (see
:mod:`flask_appmetrics.recording.validation`): bad input records nothing, and is logged, or raised
to the sender under ``APPMETRICS_STRICT``. A failure while recording valid input is a bug
of ours: it is logged and counted, never raised.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from .. import signals
from ..errors import count_internal_error
from ..llm.pricing import PriceTable
from ..metrics.catalog import BREAKER_STATES
from ..metrics.custom import CustomMetric, declared_metric
from . import validation as check
from .gemini import GeminiCall, GeminiRecorder, parse_gemini_call

if TYPE_CHECKING:
    from blinker import NamedSignal
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from ..metrics.registry_state import SharedSeries
    from ..settings import SharedSettings

logger = logging.getLogger("flask_appmetrics")

_BREAKER_EVENTS = ("success", "failure", "rejected", "state_change", "state")
_STATE_EVENTS = ("state_change", "state")


T = TypeVar("T")


# The payloads sent most often (every cache read, every breaker call) are validated into
# plain tuples: a named tuple or a frozen dataclass would cost a good part of recording
# them again, on every event.

#: A validated :data:`~flask_appmetrics.signals.cache_event` payload: hit, operation, layer.
CacheEvent = tuple[bool, str, "str | None"]
#: A validated :data:`~flask_appmetrics.signals.circuit_breaker_event` payload: service,
#: event, and the state entered (or held) for the two state events, else ``None``.
BreakerEvent = tuple[str, str, "str | None"]
#: A validated :data:`~flask_appmetrics.signals.quota_usage` payload: requests, tokens.
QuotaEvent = tuple[int, int]


class BusinessEvent(NamedTuple):
    """A validated :data:`~flask_appmetrics.signals.business_event` payload."""

    metric: CustomMetric
    amount: float
    label_values: tuple[str, ...]


def _no_unknown(unknown: Mapping[str, object]) -> None:
    if unknown:
        name = sorted(unknown)[0]
        raise TypeError(f"{name[:60]}: unknown keyword")


def parse_cache_event(
    *, hit: object = True, operation: object = "get", layer: object = None, **unknown: object
) -> CacheEvent:
    """Validate a cache event payload.

    :raises TypeError, ValueError: naming the bad field.
    """
    _no_unknown(unknown)
    return (
        check.boolean("hit", hit),
        check.label("operation", operation),
        check.optional_label("layer", layer),
    )


def parse_breaker_event(
    *, service: object = None, event: object = None, state: object = None, **unknown: object
) -> BreakerEvent:
    """Validate a circuit breaker event payload.

    :raises TypeError, ValueError: naming the bad field.
    """
    _no_unknown(unknown)
    name = check.label("service", service)
    kind = check.choice("event", event, _BREAKER_EVENTS)
    entered: str | None = None
    if kind in _STATE_EVENTS:
        if isinstance(state, str):
            state = state.replace("-", "_")  # pybreaker spells it "half-open"
        entered = check.choice("state", state, BREAKER_STATES)
    elif state is not None:
        raise ValueError(f"state: only state events carry a state, got {check.shown(state)}")
    return (name, kind, entered)


def parse_quota_usage(*, requests: object = 1, tokens: object = 0, **unknown: object) -> QuotaEvent:
    """Validate a quota usage payload: the requests and tokens to count.

    :raises TypeError, ValueError: naming the bad field.
    """
    _no_unknown(unknown)
    return check.count("requests", requests), check.count("tokens", tokens)


def parse_business_event(
    registry: CollectorRegistry,
    /,
    *,
    metric: object = None,
    value: object = 1,
    labels: object = None,
    **unknown: object,
) -> BusinessEvent:
    """Validate a business event against the custom metric of *registry* it names.

    :raises TypeError, ValueError: naming the bad field.
    """
    _no_unknown(unknown)
    name = check.label("metric", metric)
    custom = declared_metric(registry, name)
    if custom is None:
        raise ValueError(
            f"metric: {check.shown(name)} was not declared with metrics.counter/gauge/histogram"
        )
    # The same rules as calls to the metric itself (CustomMetric.amount).
    method = {"counter": "inc", "gauge": "set", "histogram": "observe"}[custom.kind]
    amount = custom.amount("value", value, method)
    return BusinessEvent(custom, amount, custom.label_values(labels))


class SignalReceivers:
    """Records the signals one app sends into its registry's metrics.

    :param app: the app (held weakly).
    :param series: the series the registry's apps share (bounded labels, quota, breakers).
    :param settings: the app's settings of the signal-fed metrics.
    :param strict: raise bad input to the sender instead of logging it.
    """

    def __init__(
        self,
        app: Flask,
        series: SharedSeries,
        settings: SharedSettings,
        *,
        strict: bool,
    ) -> None:
        self._app = weakref.ref(app)
        self.series = series
        self.strict = strict
        self.prices = PriceTable(settings.gemini_prices)
        self._gemini = GeminiRecorder(series, self.prices)
        self._cache_children: dict[tuple[str, str | None, bool], tuple[Any, ...]] = {}
        series.pin_gemini(settings.gemini_endpoints, settings.gemini_models)

    @property
    def app(self) -> Flask | None:
        """The app, unless it was collected."""
        return self._app()

    def connect(self, app: Flask) -> None:
        """Connect a receiver to each signal *app* sends."""
        registry = self.series.metric_set.registry
        pairs: tuple[tuple[NamedSignal, Callable[..., None]], ...] = (
            (
                signals.cache_event,
                self._receiver(
                    "cache event", "cache_event", parse_cache_event, self.record_cache_event
                ),
            ),
            (
                signals.gemini_call,
                self._receiver(
                    "Gemini call", "gemini_call", parse_gemini_call, self.record_gemini_call
                ),
            ),
            (
                signals.circuit_breaker_event,
                self._receiver(
                    "circuit breaker event",
                    "circuit_breaker_event",
                    parse_breaker_event,
                    self.record_circuit_breaker_event,
                ),
            ),
            (
                signals.quota_usage,
                self._receiver(
                    "quota usage", "quota_usage", parse_quota_usage, self.record_quota_usage
                ),
            ),
            (
                signals.business_event,
                self._receiver(
                    "business event",
                    "business_event",
                    partial(parse_business_event, registry),
                    self.record_business_event,
                ),
            ),
        )
        for signal, receiver in pairs:
            signal.connect(receiver, sender=app, weak=False)
        # blinker forgets a collected sender but keeps strong receivers in
        # ``signal.receivers`` for ever; disconnect ours when the app goes, so neither
        # they nor the registry they record into outlive it.
        weakref.finalize(app, _disconnect, pairs).atexit = False

    def _receiver(
        self, what: str, component: str, parse: Callable[..., T], record: Callable[[T], None]
    ) -> Callable[..., None]:
        """The receiver of one signal (see :class:`_Receiver`)."""
        return _Receiver(self, what, component, parse, record).receive

    # -- recording validated events ------------------------------------------------------

    def record_cache_event(self, event: CacheEvent) -> None:
        hit, operation, layer = event
        state = self.series
        operation = state.cache_operation(operation)
        layer = state.cache_layer(layer) if layer is not None else None
        key = (operation, layer, hit)
        children = self._cache_children.get(key)
        if children is None:
            children = self._cache_children[key] = self._cache_series(*key)
        for child in children:
            child.inc()

    def _cache_series(self, operation: str, layer: str | None, hit: bool) -> tuple[Any, ...]:
        # The hot path (every cache read): children looked up once per label set. Keys are
        # bounded label values, so this dict is bounded too.
        ms = self.series.metric_set
        result = "hit" if hit else "miss"
        children = [ms.counter("cache_operations_total").labels(operation, result)]
        if layer is not None:
            children.append(
                ms.counter("cache_layer_operations_total").labels(layer, operation, result)
            )
        return tuple(children)

    def record_gemini_call(self, call: GeminiCall) -> None:
        """Record a validated call (see :mod:`flask_appmetrics.recording.gemini`)."""
        self._gemini.record(call)

    def record_circuit_breaker_event(self, event: BreakerEvent) -> None:
        service, kind, entered = event
        ms = self.series.metric_set
        label = self.series.breaker_service(service)
        if kind == "success":
            ms.counter("circuit_breaker_successes_total").labels(label).inc()
        elif kind == "failure":
            ms.counter("circuit_breaker_failures_total").labels(label).inc()
        elif kind == "rejected":
            ms.counter("circuit_breaker_rejected_calls_total").labels(label).inc()
        else:
            assert entered is not None
            ms.gauge("circuit_breaker_state").labels(label).set(BREAKER_STATES[entered])
            if kind == "state_change":
                ms.counter("circuit_breaker_transitions_total").labels(label, entered).inc()

    def record_quota_usage(self, usage: QuotaEvent) -> None:
        self.series.add_quota(*usage)

    def record_business_event(self, event: BusinessEvent) -> None:
        event.metric.record(event.amount, event.label_values)


class _Receiver(Generic[T]):
    """Receives one signal: *parse* validates the whole payload (the signal's keywords)
    before *record* records it. Bad input is refused
    (:func:`~flask_appmetrics.recording.validation.reject`, which names *what*) and records
    nothing; a failure while recording valid input is logged and counted as an internal
    error of *component*, never raised.

    Connected as the bound method :meth:`receive`, which blinker identifies by its function
    and instance, as it does every other receiver that is a method.
    """

    def __init__(
        self,
        owner: SignalReceivers,
        what: str,
        component: str,
        parse: Callable[..., T],
        record: Callable[[T], None],
    ) -> None:
        self.owner = owner
        self.what = what
        self.component = component
        self.parse = parse
        self.record = record

    def count_internal_error(self, component: str) -> None:
        """Count a failure in *component* for this receiver's app: how :func:`send`
        counts the failure of another receiver of the same signal."""
        self.owner.series.metric_set.count_internal_error(component)

    def receive(self, sender: object, **payload: object) -> None:
        try:
            event = self.parse(**payload)
        except (TypeError, ValueError) as error:
            check.reject(self.what, error, strict=self.owner.strict)
            return
        try:
            self.record(event)
        except Exception:
            logger.exception(
                "flask-appmetrics failed to record a %s; the caller is unaffected",
                self.component,
            )
            count_internal_error(self.component, self.owner.series.metric_set.count_internal_error)


def _disconnect(pairs: tuple[tuple[NamedSignal, Callable[..., None]], ...]) -> None:
    for signal, receiver in pairs:
        signal.disconnect(receiver)


def install(
    app: Flask, series: SharedSeries, settings: SharedSettings, *, strict: bool
) -> SignalReceivers:
    """Create *app*'s receivers and connect them."""
    receivers = SignalReceivers(app, series, settings, strict=strict)
    receivers.connect(app)
    return receivers
