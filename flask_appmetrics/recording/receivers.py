"""The extension's signal receivers: record signal payloads into the app's metrics.

One :class:`DomainReceivers` serves one app. It is connected to each signal of
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals
from ..integrations.genai import token_usage
from ..llm.pricing import PriceTable
from ..llm.tokens import TokenUsage
from ..metrics.catalog import BREAKER_STATES, GEMINI_STATUSES
from ..metrics.custom import declared_metric
from . import validation as check

if TYPE_CHECKING:
    from blinker import NamedSignal
    from flask import Flask

    from ..metrics.registry_state import SharedSeries
    from ..settings import SharedSettings

logger = logging.getLogger("flask_appmetrics")

_BREAKER_EVENTS = ("success", "failure", "rejected", "state_change", "state")
_STATE_EVENTS = ("state_change", "state")


@dataclass(frozen=True)
class GeminiCall:
    """A validated :data:`~flask_appmetrics.signals.gemini_call` payload."""

    endpoint: str
    model: str
    status: str
    duration: float | None
    usage: TokenUsage


def _no_unknown(unknown: Mapping[str, object]) -> None:
    if unknown:
        name = sorted(unknown)[0]
        raise TypeError(f"{name[:60]}: unknown keyword")


def parse_gemini_call(
    *,
    endpoint: object = None,
    model: object = None,
    status: object = "success",
    duration: object = None,
    tokens: object = None,
    input_tokens: object = None,
    output_tokens: object = None,
    thoughts_tokens: object = None,
    cached_tokens: object = None,
    usage_metadata: object = None,
    **unknown: object,
) -> GeminiCall:
    """Validate a Gemini call payload; explicit counts override ``usage_metadata``'s.

    :raises TypeError, ValueError: naming the bad field.
    """
    _no_unknown(unknown)
    usage = token_usage(usage_metadata) if usage_metadata is not None else TokenUsage()
    usage = usage.with_overrides(
        input=check.optional_count("input_tokens", input_tokens),
        output=check.optional_count("output_tokens", output_tokens),
        thoughts=check.optional_count("thoughts_tokens", thoughts_tokens),
        cached=check.optional_count("cached_tokens", cached_tokens),
        total=check.optional_count("tokens", tokens),
    )
    if usage.cached is not None and usage.input is not None and usage.cached > usage.input:
        raise ValueError(
            f"cached_tokens: {usage.cached} cached tokens exceed the {usage.input} input tokens"
        )
    return GeminiCall(
        endpoint=check.label("endpoint", endpoint),
        model=check.label("model", model),
        status=check.choice("status", status, GEMINI_STATUSES),
        duration=check.optional_duration("duration", duration),
        usage=usage,
    )


class DomainReceivers:
    """Records the domain signals one app sends.

    :param app: the app (held weakly).
    :param domain: the series the registry's apps share.
    :param settings: the app's shared settings.
    :param strict: raise bad input to the sender instead of logging it.
    """

    def __init__(
        self, app: Flask, domain: SharedSeries, settings: SharedSettings, *, strict: bool
    ) -> None:
        self._app = weakref.ref(app)
        self.domain = domain
        self.strict = strict
        self.prices = PriceTable(settings.gemini_prices)
        self._cache_children: dict[tuple[str, str | None, bool], tuple[Any, ...]] = {}
        domain.pin_gemini(settings.gemini_endpoints, settings.gemini_models)

    @property
    def app(self) -> Flask | None:
        """The app, unless it was collected."""
        return self._app()

    def connect(self, app: Flask) -> None:
        """Connect every receiver to the signals *app* sends."""
        pairs: tuple[tuple[NamedSignal, Callable[..., None]], ...] = (
            (signals.cache_event, self.on_cache_event),
            (signals.gemini_call, self.on_gemini_call),
            (signals.circuit_breaker_event, self.on_circuit_breaker_event),
            (signals.quota_usage, self.on_quota_usage),
            (signals.business_event, self.on_business_event),
        )
        for signal, receiver in pairs:
            signal.connect(receiver, sender=app, weak=False)
        # blinker forgets a collected sender but keeps strong receivers in
        # ``signal.receivers`` for ever; disconnect ours when the app goes, so neither
        # they nor the registry they record into outlive it.
        weakref.finalize(app, _disconnect, pairs).atexit = False

    # -- receivers ---------------------------------------------------------------------

    def on_cache_event(
        self,
        sender: object,
        *,
        hit: object = True,
        operation: object = "get",
        layer: object = None,
        **unknown: object,
    ) -> None:
        try:
            _no_unknown(unknown)
            is_hit = check.boolean("hit", hit)
            op = check.label("operation", operation)
            layer_name = check.optional_label("layer", layer)
        except (TypeError, ValueError) as error:
            check.reject("cache event", error, strict=self.strict)
            return
        try:
            op_label = self.domain.cache_operation(op)
            layer_label = self.domain.cache_layer(layer_name) if layer_name is not None else None
            key = (op_label, layer_label, is_hit)
            children = self._cache_children.get(key)
            if children is None:
                children = self._cache_children[key] = self._cache_series(*key)
            for child in children:
                child.inc()
        except Exception:
            self._internal_error("cache_event")

    def _cache_series(self, operation: str, layer: str | None, hit: bool) -> tuple[Any, ...]:
        # The hot path (every cache read): children looked up once per label set. Keys are
        # bounded label values, so this dict is bounded too.
        ms = self.domain.metric_set
        result = "hit" if hit else "miss"
        children = [ms.counter("cache_operations_total").labels(operation, result)]
        if layer is not None:
            children.append(
                ms.counter("cache_layer_operations_total").labels(layer, operation, result)
            )
        return tuple(children)

    def on_gemini_call(self, sender: object, **payload: object) -> None:
        try:
            call = parse_gemini_call(**payload)
        except (TypeError, ValueError) as error:
            check.reject("Gemini call", error, strict=self.strict)
            return
        try:
            self.record_gemini_call(call)
        except Exception:
            self._internal_error("gemini_call")

    def record_gemini_call(self, call: GeminiCall) -> None:
        """Record a validated call: count, duration, tokens, cost and quota."""
        domain = self.domain
        ms = domain.metric_set
        endpoint, model = domain.endpoint(call.endpoint), domain.model(call.model)
        ms.counter("gemini_api_calls_total").labels(endpoint, model, call.status).inc()
        if call.duration is not None:
            ms.histogram("gemini_api_duration_seconds").labels(endpoint, model).observe(
                call.duration
            )
        usage = call.usage
        total = usage.total_tokens()
        if total is not None:
            ms.counter("gemini_api_tokens_total").labels(endpoint, model).inc(total)
        by_type = ms.counter("gemini_api_token_usage_total")
        for token_type, amount in usage.breakdown().items():
            by_type.labels(endpoint, model, token_type).inc(amount)
        # Priced by the model's real name: "other" has no price.
        price = self.prices.price(call.model)
        cost = price.cost(usage) if price is not None else None
        if cost is not None:
            ms.counter("gemini_api_cost_usd_total").labels(endpoint, model).inc(cost)
        domain.add_quota(1, total or 0)

    def on_circuit_breaker_event(
        self,
        sender: object,
        *,
        service: object = None,
        event: object = None,
        state: object = None,
        **unknown: object,
    ) -> None:
        try:
            _no_unknown(unknown)
            name = check.label("service", service)
            kind = check.choice("event", event, _BREAKER_EVENTS)
            entered: str | None = None
            if kind in _STATE_EVENTS:
                if isinstance(state, str):
                    state = state.replace("-", "_")  # pybreaker spells it "half-open"
                entered = check.choice("state", state, BREAKER_STATES)
            elif state is not None:
                raise ValueError(
                    f"state: only state events carry a state, got {check.shown(state)}"
                )
        except (TypeError, ValueError) as error:
            check.reject("circuit breaker event", error, strict=self.strict)
            return
        try:
            ms = self.domain.metric_set
            label = self.domain.breaker_service(name)
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
        except Exception:
            self._internal_error("circuit_breaker_event")

    def on_quota_usage(
        self, sender: object, *, requests: object = 1, tokens: object = 0, **unknown: object
    ) -> None:
        try:
            _no_unknown(unknown)
            n_requests = check.count("requests", requests)
            n_tokens = check.count("tokens", tokens)
        except (TypeError, ValueError) as error:
            check.reject("quota usage", error, strict=self.strict)
            return
        try:
            self.domain.add_quota(n_requests, n_tokens)
        except Exception:
            self._internal_error("quota_usage")

    def on_business_event(
        self,
        sender: object,
        *,
        metric: object = None,
        value: object = 1,
        labels: object = None,
        **unknown: object,
    ) -> None:
        try:
            _no_unknown(unknown)
            name = check.label("metric", metric)
            custom = declared_metric(self.domain.metric_set.registry, name)
            if custom is None:
                raise ValueError(
                    f"metric: {check.shown(name)} was not declared with "
                    "metrics.counter/gauge/histogram"
                )
            # The same rules as calls to the metric itself (CustomMetric.amount).
            method = {"counter": "inc", "gauge": "set", "histogram": "observe"}[custom.kind]
            amount = custom.amount("value", value, method)
            label_values = custom.label_values(labels)
        except (TypeError, ValueError) as error:
            check.reject("business event", error, strict=self.strict)
            return
        try:
            custom.record(amount, label_values)
        except Exception:
            self._internal_error("business_event")

    # -- internals ---------------------------------------------------------------------

    def _internal_error(self, component: str) -> None:
        logger.exception(
            "flask-appmetrics failed to record a %s; the caller is unaffected", component
        )
        try:
            self.domain.metric_set.count_internal_error(component)
        except Exception:  # pragma: no cover - the reporter itself failed
            logger.exception("flask-appmetrics could not count an internal error")


def _disconnect(pairs: tuple[tuple[NamedSignal, Callable[..., None]], ...]) -> None:
    for signal, receiver in pairs:
        signal.disconnect(receiver)


def install(
    app: Flask, domain: SharedSeries, settings: SharedSettings, *, strict: bool
) -> DomainReceivers:
    """Create *app*'s receivers and connect them."""
    receivers = DomainReceivers(app, domain, settings, strict=strict)
    receivers.connect(app)
    return receivers
