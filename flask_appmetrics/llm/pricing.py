"""Estimated cost of Gemini calls, from a price table in USD per million tokens.

The defaults are Google's published paid-tier list prices (2025, prompts up to 128k/200k
tokens, text) and only an estimate: override ``APPMETRICS_GEMINI_PRICES`` with your
contract's prices. A model is priced by the longest table key it starts with, so
``gemini-1.5-flash-002`` uses the ``gemini-1.5-flash`` row; a model with no row is not
priced (its calls add nothing to ``gemini_api_cost_usd_total``).

Billing follows Gemini's: cached prompt tokens at the ``cached`` price (``input`` if the
row has none), the rest of the prompt at ``input``, response and thinking tokens at
``output``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import ConfigurationError
from .tokens import TokenUsage


def _row(input: float, output: float, cached: float | None = None) -> Mapping[str, float]:
    row = {"input": input, "output": output}
    if cached is not None:
        row["cached"] = cached
    return MappingProxyType(row)


#: USD per million tokens, by model name prefix. Read-only; pass your own mapping (e.g.
#: ``{**DEFAULT_GEMINI_PRICES, "my-model": {"input": 1.0, "output": 2.0}}``) to change it.
DEFAULT_GEMINI_PRICES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "gemini-1.5-flash": _row(0.075, 0.30, 0.01875),
        "gemini-1.5-flash-8b": _row(0.0375, 0.15, 0.01),
        "gemini-1.5-pro": _row(1.25, 5.00, 0.3125),
        "gemini-2.0-flash": _row(0.10, 0.40, 0.025),
        "gemini-2.0-flash-lite": _row(0.075, 0.30),
        "gemini-2.5-flash": _row(0.30, 2.50, 0.03),
        "gemini-2.5-flash-lite": _row(0.10, 0.40, 0.01),
        "gemini-2.5-pro": _row(1.25, 10.00, 0.125),
    }
)

_PER = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: float
    output: float
    cached: float | None = None

    def cost(self, usage: TokenUsage) -> float | None:
        """The cost of *usage* in USD, or ``None`` if it has no breakdown to price."""
        if usage.input is None and usage.output is None and usage.thoughts is None:
            return None
        prompt = usage.input or 0
        cached = min(usage.cached or 0, prompt)
        cached_price = self.input if self.cached is None else self.cached
        completion = (usage.output or 0) + (usage.thoughts or 0)
        return (
            (prompt - cached) * self.input + cached * cached_price + completion * self.output
        ) / _PER


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
        name = model.removeprefix("models/")
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
        if not isinstance(row, Mapping) or not {"input", "output"} <= set(row):
            raise ConfigurationError(
                key, f"{model}: expected {{'input': usd, 'output': usd[, 'cached': usd]}}"
            )
        extra = set(row) - {"input", "output", "cached"}
        if extra:
            raise ConfigurationError(key, f"{model}: unknown price keys {sorted(extra)}")
        numbers: dict[str, float] = {}
        for name, amount in row.items():
            if (
                isinstance(amount, bool)
                or not isinstance(amount, (int, float))
                or not math.isfinite(amount)
                or amount < 0
            ):
                raise ConfigurationError(
                    key, f"{model}.{name}: expected a non-negative number, got {amount!r}"
                )
            numbers[name] = float(amount)
        prices[model] = ModelPrice(numbers["input"], numbers["output"], numbers.get("cached"))
    return prices
