"""Spend against a daily budget, the dated price table, and models without a price."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import DEFAULT_GEMINI_PRICES, ConfigurationError, record_gemini_usage
from flask_appmetrics.llm.budget import InMemorySpend, remaining
from flask_appmetrics.llm.pricing import DEFAULT_PRICES_DATE, PriceTable, parse_prices
from flask_appmetrics.llm.tokens import TokenUsage
from tests.support.apps import AppFactory
from tests.support.clock import FakeClock


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_spend_today_and_budget_remaining(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_GEMINI_DAILY_BUDGET_USD": 2.0})
    assert value(registry, "gemini_api_daily_budget_usd") == 2.0
    assert value(registry, "gemini_api_spend_today_usd") == 0.0
    assert value(registry, "gemini_api_budget_remaining_usd") == 2.0
    with app.app_context():
        # gemini-2.5-pro: 1.25 USD per million input tokens, 10 per million output.
        record_gemini_usage("/api/x", "gemini-2.5-pro", input_tokens=400_000, output_tokens=50_000)
    # 400k prompt tokens are over the 200k long-context threshold: 2.50 and 15.00.
    spent = (400_000 * 2.50 + 50_000 * 15.00) / 1e6
    assert value(registry, "gemini_api_spend_today_usd") == pytest.approx(spent)
    assert value(registry, "gemini_api_budget_remaining_usd") == pytest.approx(2.0 - spent)
    with app.app_context():
        record_gemini_usage("/api/x", "gemini-2.5-pro", input_tokens=1_000_000)
    # Overspent: nothing remains; spend today says by how much.
    assert value(registry, "gemini_api_budget_remaining_usd") == 0.0
    assert value(registry, "gemini_api_spend_today_usd") == pytest.approx(spent + 2.50)


def test_without_a_budget_remaining_is_infinite_and_the_budget_absent(
    app: Flask, registry: CollectorRegistry
) -> None:
    assert value(registry, "gemini_api_daily_budget_usd") is None
    assert value(registry, "gemini_api_budget_remaining_usd") == math.inf
    assert value(registry, "gemini_api_spend_today_usd") == 0.0


def test_the_day_ends_at_midnight_in_the_quota_time_zone() -> None:
    zone = ZoneInfo("America/Los_Angeles")
    clock = FakeClock(datetime(2026, 3, 1, 23, 59, tzinfo=zone).timestamp())
    spend = InMemorySpend("America/Los_Angeles", clock=clock)
    assert spend.add(1.5) == 1.5
    assert spend.add(0.5) == 2.0
    clock.advance(59)
    assert spend.today() == 2.0
    clock.advance(2)  # 00:00:01 Pacific: a new day, even with nothing recorded
    assert spend.today() == 0.0
    assert spend.add(0.25) == 0.25
    assert remaining(1.0, spend.today()) == 0.75
    assert remaining(None, 5.0) == math.inf


@pytest.mark.parametrize("budget", [-1, "ten", True, math.nan, math.inf, [10]])
def test_a_bad_budget_fails_at_start(app_factory: AppFactory, budget: object) -> None:
    with pytest.raises(ConfigurationError, match="APPMETRICS_GEMINI_DAILY_BUDGET_USD"):
        app_factory({"APPMETRICS_GEMINI_DAILY_BUDGET_USD": budget})


def test_the_budget_from_the_environment(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    # As os.environ gives it: a string.
    app_factory({"APPMETRICS_GEMINI_DAILY_BUDGET_USD": "12.5"})
    assert value(registry, "gemini_api_daily_budget_usd") == 12.5


def test_a_model_without_a_price_is_counted_as_such(
    app: Flask, registry: CollectorRegistry
) -> None:
    with app.app_context():
        record_gemini_usage("/api/x", "gemini-3-pro-preview", input_tokens=100, output_tokens=10)
        record_gemini_usage("/api/x", "gemini-3-pro-preview", status="error")  # no tokens
        record_gemini_usage("/api/x", "gemini-2.5-flash", input_tokens=100)
    # Not priced at zero: no cost at all, and a count of the calls that could not be priced.
    labels = {"endpoint": "/api/x", "model": "gemini-3-pro-preview"}
    assert value(registry, "gemini_api_cost_usd_total", **labels) is None
    assert value(registry, "gemini_api_unpriced_calls_total", model="gemini-3-pro-preview") == 1
    assert value(registry, "gemini_api_unpriced_calls_total", model="gemini-2.5-flash") is None
    assert value(registry, "gemini_api_spend_today_usd") == pytest.approx(100 * 0.30 / 1e6)


def test_the_price_table_is_dated_and_covers_current_models() -> None:
    datetime.strptime(DEFAULT_PRICES_DATE, "%Y-%m-%d")  # a date
    table = PriceTable(parse_prices("k", DEFAULT_GEMINI_PRICES))
    usage = TokenUsage(input=1_000_000, output=1_000_000, cached=0)
    expected = {
        "gemini-2.5-pro": 1.25 + 10.00,
        "gemini-2.5-flash": 0.30 + 2.50,
        "gemini-2.5-flash-lite": 0.10 + 0.40,
        "gemini-2.0-flash": 0.10 + 0.40,
    }
    for model, cost in expected.items():
        price = table.price(f"{model}-001")
        assert price is not None, model
        # 1M prompt tokens is over 2.5 Pro's long-context threshold: priced at 2.50/15.00.
        assert price.cost(usage) == pytest.approx(17.50 if model == "gemini-2.5-pro" else cost)
    flash = table.price("gemini-2.5-flash")
    assert flash is not None
    assert flash.cost(TokenUsage(input=100, cached=100)) == pytest.approx(100 * 0.03 / 1e6)


def test_a_long_context_tier_can_be_configured(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    prices = {
        "my-model": {
            "input": 1.0,
            "output": 2.0,
            "long_context": {"threshold": 1000, "input": 3.0, "output": 4.0},
        }
    }
    app = app_factory({"APPMETRICS_GEMINI_PRICES": prices})
    with app.app_context():
        record_gemini_usage("/api/x", "my-model", input_tokens=1000, output_tokens=1000)
        record_gemini_usage("/api/x", "my-model", input_tokens=1001, output_tokens=1000)
    cost = value(registry, "gemini_api_cost_usd_total", endpoint="/api/x", model="my-model")
    assert cost == pytest.approx((1000 * 1.0 + 1000 * 2.0 + 1001 * 3.0 + 1000 * 4.0) / 1e6)


@pytest.mark.parametrize(
    "row",
    [
        {"input": 1, "output": 1, "long_context": {"input": 1, "output": 1}},
        {"input": 1, "output": 1, "long_context": {"threshold": 0, "input": 1, "output": 1}},
        {"input": 1, "output": 1, "long_context": {"threshold": 10, "input": -1, "output": 1}},
        {
            "input": 1,
            "output": 1,
            "long_context": {"threshold": 10, "input": 1, "output": 1, "x": 1},
        },
        {"input": 1, "output": 1, "long_context": 5},
    ],
)
def test_bad_long_context_rows_name_the_field(app_factory: AppFactory, row: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"m\.long_context"):
        app_factory({"APPMETRICS_GEMINI_PRICES": {"m": row}})
