"""Recording one LLM call (the :data:`~flask_appmetrics.signals.gemini_call` signal): the
``gemini_*`` families, the OpenTelemetry ``gen_ai_*`` ones, cost and budget, quota.

:func:`parse_gemini_call` validates a payload whole (bad input records nothing);
:class:`GeminiRecorder` records a valid one into the registry's series.

Token semantics, the same in every family and in the cost: *input* includes the cached
prompt tokens, *output* includes the reasoning ("thoughts") tokens, as OpenTelemetry's
``gen_ai.token.type`` and Gemini's billing count them; ``cached`` and ``thoughts`` are the
parts of each, shown on their own.

What a call records, by status:

* ``rejected`` (a circuit breaker refused it; it never reached the API):
  ``gemini_api_rejected_calls_total`` only. No quota, no duration, no ``gen_ai_*``.
* an operation ``count_tokens`` (free, and no generation): its duration in
  ``gen_ai_client_operation_duration_seconds`` only.
* everything else (``success``, ``error``, ``cancelled``): the call, its duration, its
  tokens, cost and finish reasons, one request and its tokens against the quota; a
  failure its ``error_type``; a quota refusal (``RESOURCE_EXHAUSTED``) in
  ``quota_refused_total`` and, with no quota limit configured, in the learned limits; a
  stream its time to first chunk, and when it ran to its end, its output tokens per second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..integrations.genai import errors as genai_errors
from ..integrations.genai import responses
from ..integrations.genai.tokens import token_usage
from ..llm.conventions import GEN_AI_OPERATIONS, GEN_AI_PROVIDERS
from ..llm.learned import REFUSAL_LIMITS
from ..llm.pricing import PriceTable
from ..llm.tokens import TokenUsage
from ..metrics.catalog import CALL_STATUSES
from . import validation as check

if TYPE_CHECKING:
    from ..metrics.registry_state import SharedSeries


@dataclass(frozen=True)
class GeminiCall:
    """A validated :data:`~flask_appmetrics.signals.gemini_call` payload."""

    endpoint: str
    model: str
    status: str
    duration: float | None
    usage: TokenUsage
    operation: str = "generate_content"
    provider: str = "gcp.gemini"
    #: For a failed call: one of :data:`~flask_appmetrics.integrations.genai.errors.ERROR_TYPES`.
    error_type: str | None = None
    #: For a quota refusal: the limit it named and its value, if the API said.
    refusal: genai_errors.QuotaRefusal | None = None
    finish_reasons: tuple[str, ...] = field(default=())
    response_model: str | None = None
    #: For a stream: seconds from the request to its first chunk.
    time_to_first_chunk: float | None = None


# Reasons a payload may list: one per candidate, and Gemini answers with at most 8.
_MAX_REASONS = 8


def _finish_reasons(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"finish_reasons: expected a list of strings, got {check.shown(value)}")
    if len(value) > _MAX_REASONS:
        raise ValueError(f"finish_reasons: at most {_MAX_REASONS}, got {len(value)}")
    for item in value:
        if not isinstance(item, str) and not hasattr(item, "value"):
            raise TypeError(f"finish_reasons: expected strings, got {check.shown(item)}")
    return tuple(responses.reason_label(item) for item in value)


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
    operation: object = "generate_content",
    provider: object = "gcp.gemini",
    error_type: object = None,
    refused_limit: object = None,
    refused_value: object = None,
    finish_reasons: object = None,
    response_model: object = None,
    time_to_first_chunk: object = None,
    **unknown: object,
) -> GeminiCall:
    """Validate a Gemini call payload; explicit counts override ``usage_metadata``'s, and
    explicit finish reasons and response model those of a response given as
    ``usage_metadata``.

    :raises TypeError, ValueError: naming the bad field.
    """
    if unknown:
        name = sorted(unknown)[0]
        raise TypeError(f"{name[:60]}: unknown keyword")
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
    kind = check.choice("status", status, CALL_STATUSES)
    seconds = check.optional_duration("duration", duration)
    first = check.optional_duration("time_to_first_chunk", time_to_first_chunk)
    if first is not None and seconds is not None and first > seconds:
        raise ValueError(
            f"time_to_first_chunk: {first} s is longer than the call's duration ({seconds} s)"
        )
    failure = check.optional_label("error_type", error_type)
    if failure is not None and kind != "error":
        raise ValueError(f"error_type: only failed calls have one (status is {kind!r})")
    if kind == "error":
        failure = genai_errors.error_type(failure) if failure is not None else genai_errors.OTHER
    refusal = None
    refused = refused_limit is not None or refused_value is not None
    if refused and failure != genai_errors.RESOURCE_EXHAUSTED:
        raise ValueError("refused_limit: only a RESOURCE_EXHAUSTED error is a quota refusal")
    if failure == genai_errors.RESOURCE_EXHAUSTED:
        limit = "unknown" if refused_limit is None else refused_limit
        refusal = genai_errors.QuotaRefusal(
            check.choice("refused_limit", limit, REFUSAL_LIMITS),
            check.optional_count("refused_value", refused_value),
        )
    facts = responses.describe(usage_metadata) if usage_metadata is not None else None
    reasons = _finish_reasons(finish_reasons)
    answered_by = check.optional_label("response_model", response_model)
    return GeminiCall(
        endpoint=check.label("endpoint", endpoint),
        model=check.label("model", model),
        status=kind,
        duration=seconds,
        usage=usage,
        operation=check.choice("operation", operation, GEN_AI_OPERATIONS),
        provider=check.choice("provider", provider, GEN_AI_PROVIDERS),
        error_type=failure,
        refusal=refusal,
        finish_reasons=reasons if reasons is not None else (facts.finish_reasons if facts else ()),
        response_model=answered_by
        if answered_by is not None
        else (facts.response_model if facts else None),
        time_to_first_chunk=first,
    )


class GeminiRecorder:
    """Records validated calls into one registry's series.

    :param series: the registry's shared series (labels, quota, spend, learned limits).
    :param prices: the price table of the app's settings.
    """

    def __init__(self, series: SharedSeries, prices: PriceTable) -> None:
        self.series = series
        self.prices = prices

    def record(self, call: GeminiCall) -> None:
        state = self.series
        ms = state.metric_set
        gemini = ms.has("gemini_api_calls_total")
        gen_ai = ms.has("gen_ai_client_operation_duration_seconds")
        endpoint, model = state.endpoint(call.endpoint), state.model(call.model)
        if call.status == "rejected":
            if gemini:
                ms.counter("gemini_api_rejected_calls_total").labels(endpoint, model).inc()
            return
        answered_by = state.model(call.response_model) if call.response_model else ""
        otel = (call.operation, call.provider, model, answered_by)
        if gen_ai and call.duration is not None:
            ms.histogram("gen_ai_client_operation_duration_seconds").labels(
                *otel, call.error_type or ""
            ).observe(call.duration)
        if call.operation == "count_tokens":
            return
        usage = call.usage
        total = usage.total_tokens()
        cost = self._cost(call.model, usage)
        if gemini:
            self._gemini(call, endpoint, model, total, cost)
        if gen_ai:
            self._gen_ai(call, otel)
        state.add_quota(1, total or 0)
        if cost is not None and cost > 0:
            state.add_spend(cost)
        refusal = call.refusal
        if refusal is not None:
            ms.counter("quota_refused_total").labels(model, refusal.limit).inc()
            state.learn_refusal(model, refusal.limit, refusal.value)
        else:
            state.learn_call(model, total or 0)

    def _cost(self, model: str, usage: TokenUsage) -> float | None:
        # Priced by the model's real name: "other" has no price.
        price = self.prices.price(model)
        return price.cost(usage) if price is not None else None

    def _gemini(
        self, call: GeminiCall, endpoint: str, model: str, total: int | None, cost: float | None
    ) -> None:
        ms = self.series.metric_set
        usage = call.usage
        ms.counter("gemini_api_calls_total").labels(endpoint, model, call.status).inc()
        if call.duration is not None:
            ms.histogram("gemini_api_duration_seconds").labels(endpoint, model).observe(
                call.duration
            )
        if call.error_type is not None:
            ms.counter("gemini_api_errors_total").labels(endpoint, model, call.error_type).inc()
        if total is not None:
            ms.counter("gemini_api_tokens_total").labels(endpoint, model).inc(total)
        by_type = ms.counter("gemini_api_token_usage_total")
        for token_type, amount in usage.breakdown().items():
            by_type.labels(endpoint, model, token_type).inc(amount)
        if cost is not None:
            ms.counter("gemini_api_cost_usd_total").labels(endpoint, model).inc(cost)
        elif usage.input is not None or usage.output is not None or usage.thoughts is not None:
            ms.counter("gemini_api_unpriced_calls_total").labels(model).inc()
        for reason in call.finish_reasons:
            ms.counter("gemini_api_finish_reasons_total").labels(model, reason).inc()
        first = call.time_to_first_chunk
        if first is not None:
            ms.histogram("gemini_api_time_to_first_chunk_seconds").labels(endpoint, model).observe(
                first
            )
            speed = tokens_per_second(call)
            if speed is not None:
                ms.histogram("gemini_api_output_tokens_per_second").labels(endpoint, model).observe(
                    speed
                )

    def _gen_ai(self, call: GeminiCall, otel: tuple[str, str, str, str]) -> None:
        ms = self.series.metric_set
        tokens = ms.histogram("gen_ai_client_token_usage")
        usage = call.usage
        if usage.input is not None:
            tokens.labels(*otel, "input").observe(usage.input)
        output = usage.output_total()
        if output is not None:
            tokens.labels(*otel, "output").observe(output)
        if call.time_to_first_chunk is not None:
            ms.histogram("gen_ai_client_operation_time_to_first_chunk_seconds").labels(
                *otel
            ).observe(call.time_to_first_chunk)


def tokens_per_second(call: GeminiCall) -> float | None:
    """Output tokens per second of a stream that ran to its end, over the time from its
    first chunk to its last (the generation, without the wait for the first chunk)."""
    first, duration = call.time_to_first_chunk, call.duration
    output = call.usage.output_total()
    if call.status != "success" or first is None or duration is None or not output:
        return None
    generating = duration - first
    return output / generating if generating > 0 else None
