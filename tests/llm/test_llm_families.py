"""``APPMETRICS_LLM_FAMILIES``: the ``gemini_api_*`` and OpenTelemetry ``gen_ai_*`` sets,
each on by default and each possible to turn off; and the limits learned from refusals."""

from __future__ import annotations

import gc

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import ConfigurationError, FlaskMetrics, record_gemini_usage
from flask_appmetrics.llm.learned import InMemoryLearnedLimits, LearnedLimit
from tests.support.apps import AppFactory
from tests.support.clock import FakeClock


def family_names(registry: CollectorRegistry) -> set[str]:
    from prometheus_client import generate_latest

    return {
        family.name for family in text_string_to_metric_families(generate_latest(registry).decode())
    }


def record_one(app: Flask) -> None:
    with app.app_context():
        record_gemini_usage(
            "/api/x", "gemini-2.5-flash", duration=0.3, input_tokens=10, output_tokens=5
        )


def test_both_sets_by_default(app: Flask, registry: CollectorRegistry) -> None:
    record_one(app)
    names = family_names(registry)
    assert {"gemini_api_calls", "gemini_api_spend_today_usd"} <= names
    assert {"gen_ai_client_operation_duration_seconds", "gen_ai_client_token_usage"} <= names


@pytest.mark.parametrize(
    ("families", "present", "absent"),
    [
        (["gen_ai"], "gen_ai_client_operation_duration_seconds", "gemini_api_calls"),
        (["gemini"], "gemini_api_calls", "gen_ai_client_operation_duration_seconds"),
    ],
)
def test_either_set_turns_off(
    app_factory: AppFactory,
    registry: CollectorRegistry,
    families: list[str],
    present: str,
    absent: str,
) -> None:
    app = app_factory({"APPMETRICS_LLM_FAMILIES": families})
    record_one(app)
    names = family_names(registry)
    assert present in names
    off = "gemini_api_" if absent.startswith("gemini") else "gen_ai_"
    assert not {name for name in names if name.startswith(off)}
    # The quota counts the call whichever families are on.
    assert registry.get_sample_value("quota_requests_today") == 1


def test_family_sets_from_the_environment(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_LLM_FAMILIES": "gemini"})  # as os.environ gives it
    assert app.config["APPMETRICS_LLM_FAMILIES"] == ("gemini",)
    record_one(app)
    assert not {n for n in family_names(registry) if n.startswith("gen_ai_")}


def test_with_no_llm_family_the_quota_still_counts(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_LLM_FAMILIES": []})
    record_one(app)
    names = family_names(registry)
    assert not {n for n in names if n.startswith(("gemini_api_", "gen_ai_"))}
    assert registry.get_sample_value("quota_tokens_today") == 15


def test_a_later_app_with_other_sets_reconfigures_the_registry(registry: CollectorRegistry) -> None:
    metrics = FlaskMetrics(registry=registry)
    first = Flask("first")
    first.config["APPMETRICS_LLM_FAMILIES"] = ["gemini"]
    metrics.init_app(first)
    second = Flask("second")
    second.config["APPMETRICS_LLM_FAMILIES"] = ["gen_ai"]
    with pytest.raises(ConfigurationError, match="APPMETRICS_LLM_FAMILIES"):
        metrics.init_app(second)
    del first
    gc.collect()
    third = Flask("third")
    third.config["APPMETRICS_LLM_FAMILIES"] = ["gen_ai"]
    metrics.init_app(third)
    record_one(third)
    names = family_names(registry)
    assert "gen_ai_client_operation_duration_seconds" in names
    assert "gemini_api_calls" not in names
    assert "gemini_api_spend_today_usd" not in names


@pytest.mark.parametrize("families", [["otel"], "gemini,otel", [1], 5])
def test_bad_family_sets_fail_at_start(app_factory: AppFactory, families: object) -> None:
    with pytest.raises(ConfigurationError, match="APPMETRICS_LLM_FAMILIES"):
        app_factory({"APPMETRICS_LLM_FAMILIES": families})


# -- learned limits, on their own -----------------------------------------------------------


def test_observed_limits_learn_from_each_minutes_first_refusal() -> None:
    clock = FakeClock(60.0 * 1000)
    learned = InMemoryLearnedLimits(clock=clock)
    for _ in range(7):
        learned.note_call("m", 100)
    learned.refused("m", "unknown", None)
    learned.note_call("m", 100)  # one more went through after the refusal
    learned.refused("m", "unknown", None)  # the same minute: nothing new
    assert set(learned.limits()) == {
        LearnedLimit("m", "rpm", 7.0, "observed"),
        LearnedLimit("m", "tpm", 700.0, "observed"),
    }
    clock.advance(60)
    for _ in range(3):
        learned.note_call("m", 10)
    learned.refused("m", "unknown", None)  # a new minute learns afresh
    assert LearnedLimit("m", "rpm", 3.0, "observed") in learned.limits()


def test_a_reported_limit_is_not_overwritten_by_an_observation() -> None:
    learned = InMemoryLearnedLimits(clock=FakeClock(0.0))
    learned.refused("m", "rpm", 15)
    learned.note_call("m", 5)
    learned.refused("m", "unknown", None)
    limits = {(limit.limit, limit.source): limit.value for limit in learned.limits()}
    assert limits == {("rpm", "reported"): 15.0, ("tpm", "observed"): 5.0}
    learned.refused("m", "rpm", 30)  # a tier upgrade: the latest report wins
    assert LearnedLimit("m", "rpm", 30.0, "reported") in learned.limits()


def test_learned_limits_are_bounded_in_models() -> None:
    learned = InMemoryLearnedLimits(clock=FakeClock(0.0))
    for index in range(1000):
        learned.note_call(f"m{index}", 1)
        learned.refused(f"m{index}", "unknown", None)
    assert len({limit.model for limit in learned.limits()}) <= 200
