"""Estimated cost of Gemini calls, from a price table in USD per million tokens.

The defaults are Google's paid-tier list prices for text on the Gemini Developer API
(Standard tier), as published at https://ai.google.dev/gemini-api/docs/pricing and dated
by :data:`DEFAULT_PRICES_DATE`. They are an estimate, not a bill: batch, flex and priority
tiers, audio and image input, grounding and context-cache storage are priced otherwise,
and prices change. Override ``APPMETRICS_GEMINI_PRICES`` with your contract's prices.

A model is priced by the longest table key it starts with, so ``gemini-2.5-flash-001``
uses the ``gemini-2.5-flash`` row (and ``gemini-2.5-flash-lite`` its own). A model with no
row is not priced: its calls add nothing to ``gemini_api_cost_usd_total`` and are counted
in ``gemini_api_unpriced_calls_total`` instead, so a missing price shows rather than
passing for zero cost.

Billing follows Gemini's, which is also OpenTelemetry's token semantics (input includes
cached tokens, output includes reasoning tokens): cached prompt tokens at the ``cached``
price (``input`` if the row has none), the rest of the prompt at ``input``, response and
thinking tokens at ``output``. A row may have a ``long_context`` tier (Gemini 2.5 Pro
charges more for prompts over 200k tokens): a call whose prompt is longer than its
``threshold`` is priced entirely at the tier's prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import ConfigurationError
from .tokens import TokenUsage


def _row(
    input: float,
    output: float,
    cached: float | None = None,
    long_context: Mapping[str, float] | None = None,
) -> Mapping[str, Any]:
    row: dict[str, Any] = {"input": input, "output": output}
    if cached is not None:
        row["cached"] = cached
    if long_context is not None:
        row["long_context"] = MappingProxyType(dict(long_context))
    return MappingProxyType(row)


#: The day the default prices were last checked against Google's published list prices
#: (the Gemini 2.0 Flash models were deprecated by then, and are kept for apps still on
#: them). Gemini 3 models are not in the table: add their rows with your prices.
DEFAULT_PRICES_DATE = "2026-06-17"

#: USD per million tokens, by model name prefix (see :data:`DEFAULT_PRICES_DATE`).
#: Read-only; pass your own mapping (e.g.
#: ``{**DEFAULT_GEMINI_PRICES, "my-model": {"input": 1.0, "output": 2.0}}``) to change it.
DEFAULT_GEMINI_PRICES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # Retired models, kept for the label values of existing dashboards.
        "gemini-1.5-flash": _row(0.075, 0.30, 0.01875),
        "gemini-1.5-flash-8b": _row(0.0375, 0.15, 0.01),
        "gemini-1.5-pro": _row(1.25, 5.00, 0.3125),
        "gemini-2.0-flash": _row(0.10, 0.40, 0.025),
        "gemini-2.0-flash-lite": _row(0.075, 0.30),
        "gemini-2.5-flash": _row(0.30, 2.50, 0.03),
        "gemini-2.5-flash-lite": _row(0.10, 0.40, 0.01),
        "gemini-2.5-pro": _row(
            1.25,
            10.00,
            0.125,
            long_context={"threshold": 200_000, "input": 2.50, "output": 15.00, "cached": 0.25},
        ),
    }
)

_PER = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model.

    :param long_context: prices of prompts longer than *threshold* tokens, if they differ.
    :param threshold: prompt tokens above which *long_context* applies.
    """

    input: float
    output: float
    cached: float | None = None
    long_context: ModelPrice | None = None
    threshold: int | None = None

    def cost(self, usage: TokenUsage) -> float | None:
        """The cost of *usage* in USD, or ``None`` if it has no breakdown to price."""
        if usage.input is None and usage.output is None and usage.thoughts is None:
            return None
        prompt = usage.input or 0
        long_context, threshold = self.long_context, self.threshold
        if long_context is not None and threshold is not None and prompt > threshold:
            return long_context.cost(usage)
        cached = min(usage.cached or 0, prompt)
        cached_price = self.input if self.cached is None else self.cached
        completion = (usage.output or 0) + (usage.thoughts or 0)
        return (
            (prompt - cached) * self.input + cached * cached_price + completion * self.output
        ) / _PER


def model_id(model: str) -> str:
    """The model's id without the resource path google-genai accepts around it:
    ``models/gemini-2.5-flash`` and
    ``projects/p/locations/l/publishers/google/models/gemini-2.5-flash`` are
    ``gemini-2.5-flash``; tuned models (``tunedModels/123``) and plain ids stay as they are."""
    head, found, tail = model.rpartition("models/")
    if found and tail and (not head or head.endswith("/")):
        return tail
    return model


class PriceTable:
    """Looks up the :class:`ModelPrice` of a model by longest matching prefix."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        # Longest first, so "gemini-2.5-flash-lite" wins over "gemini-2.5-flash".
        self._rows = sorted(prices.items(), key=lambda item: len(item[0]), reverse=True)
        self._cache: dict[str, ModelPrice | None] = {}

    def price(self, model: str) -> ModelPrice | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        name = model_id(model)
        found = next((row for prefix, row in self._rows if name.startswith(prefix)), None)
        if len(self._cache) < 1000:  # bounded: model names may come from input
            self._cache[model] = found
        return found


def parse_prices(key: str, value: Any) -> dict[str, ModelPrice]:
    """Validate a price table from the config.

    :raises ConfigurationError: naming *key* and the bad row.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, f"expected a mapping of model to prices, got {value!r}")
    prices: dict[str, ModelPrice] = {}
    for model, row in value.items():
        if not isinstance(model, str) or not model:
            raise ConfigurationError(key, f"model names must be non-empty strings, got {model!r}")
        prices[model] = _parse_row(key, model, row)
    return prices


_ROW_SHAPE = "{'input': usd, 'output': usd[, 'cached': usd][, 'long_context': {...}]}"
_TIER_SHAPE = "{'threshold': tokens, 'input': usd, 'output': usd[, 'cached': usd]}"


def _parse_row(key: str, model: str, row: object) -> ModelPrice:
    if not isinstance(row, Mapping) or not {"input", "output"} <= set(row):
        raise ConfigurationError(key, f"{model}: expected {_ROW_SHAPE}")
    extra = set(row) - {"input", "output", "cached", "long_context"}
    if extra:
        raise ConfigurationError(key, f"{model}: unknown price keys {sorted(extra)}")
    numbers = _amounts(key, model, {k: v for k, v in row.items() if k != "long_context"})
    tier = row.get("long_context")
    long_context: ModelPrice | None = None
    threshold: int | None = None
    if tier is not None:
        where = f"{model}.long_context"
        if not isinstance(tier, Mapping) or not {"threshold", "input", "output"} <= set(tier):
            raise ConfigurationError(key, f"{where}: expected {_TIER_SHAPE}")
        extra = set(tier) - {"threshold", "input", "output", "cached"}
        if extra:
            raise ConfigurationError(key, f"{where}: unknown keys {sorted(extra)}")
        threshold = tier["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(
                key, f"{where}.threshold: expected a positive integer, got {threshold!r}"
            )
        amounts = _amounts(key, where, {k: v for k, v in tier.items() if k != "threshold"})
        long_context = ModelPrice(amounts["input"], amounts["output"], amounts.get("cached"))
    return ModelPrice(
        numbers["input"], numbers["output"], numbers.get("cached"), long_context, threshold
    )


def _amounts(key: str, where: str, row: Mapping[str, object]) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for name, amount in row.items():
        if (
            isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or not math.isfinite(amount)
            or amount < 0
        ):
            raise ConfigurationError(
                key, f"{where}.{name}: expected a non-negative number, got {amount!r}"
            )
        numbers[str(name)] = float(amount)
    return numbers
