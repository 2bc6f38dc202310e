"""Objectives as declared: values parsed and refused with the field named, thresholds on
the histogram's buckets (refused at init_app, or at declaration for apps already set up)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.config import DEFAULT_BUCKETS
from flask_appmetrics.slo.objectives import (
    Objective,
    Scope,
    declare,
    from_config,
    parse_threshold,
    threshold_problem,
)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("300ms", 0.3), ("0.3s", 0.3), ("2s", 2.0), (" 250 ms ", 0.25), (0.5, 0.5), (1, 1.0)],
)
def test_thresholds_are_read_in_seconds(written: object, seconds: float) -> None:
    assert parse_threshold(written, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("written", ["300", "3m", "fast", "-1s", "0ms", True, None, [0.3]])
def test_malformed_thresholds_are_refused(written: object) -> None:
    with pytest.raises(ConfigurationError, match="latency threshold"):
        parse_threshold(written, "x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"availability": 99.9}, r"between 0 and 1.*write 0.999"),
        ({"availability": 1.0}, "between 0 and 1"),
        ({"availability": 0.9999999}, "error budget below"),
        ({"availability": "0.999"}, "must be a number"),
        ({"latency": ("300ms",)}, r"\(threshold, target\)"),
        ({"latency": ("300ms", 2)}, "latency target must be between"),
        ({}, "declares no objective"),
        ({"availability": 0.99, "name": "has space"}, "name must be"),
    ],
)
def test_bad_declarations_are_refused_naming_the_source(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as raised:
        declare(Scope("app"), source="here", **kwargs)
    assert raised.value.key == "here"


def test_a_declaration_makes_availability_then_latency() -> None:
    declaration = declare(
        Scope("app"), availability=0.999, latency=("300ms", 0.99), source="s", name="api"
    )
    assert declaration.objectives("api") == (
        Objective("api", "availability", 0.999),
        Objective("api", "latency", 0.99, 0.3),
    )


def test_what_spends_the_budget() -> None:
    availability = Objective("a", "availability", 0.99)
    latency = Objective("a", "latency", 0.99, 0.3)
    assert availability.is_bad(10.0, 500)
    assert not availability.is_bad(10.0, 404)  # the client's mistake
    assert latency.is_bad(0.31, 200)
    assert not latency.is_bad(0.3, 500)  # within the bucket le=0.3, as Prometheus counts it
    assert availability.describe() == "99% of requests do not fail with a 5xx"
    assert latency.describe() == "99% of requests finish within 300 ms"


def test_config_entries_name_their_index() -> None:
    entries = [
        {"name": "api", "availability": 0.999, "blueprint": "api"},
        {"endpoints": ["search"], "latency": {"threshold": "250ms", "target": 0.95}},
        {"availability": 0.99},
    ]
    api, search, whole = from_config(entries)
    assert (api.scope.kind, api.scope.blueprint, api.per_app) == ("blueprint", "api", True)
    assert (search.scope.endpoints, search.latency) == (("search",), (0.25, 0.95))
    assert whole.scope.kind == "app"
    bad: list[tuple[object, str]] = [
        ({"name": "x"}, "expected a list of objectives"),
        ([{"name": "x"}], r"APPMETRICS_SLOS\[0\].*no objective"),
        ([{"availability": 0.9, "typo": 1}], r"\[0\].*unknown key 'typo'"),
        ([{"availability": 0.9}, {"availability": 0.9, "blueprint": "a", "endpoints": ["b"]}],
         r"\[1\].*not both"),
        ([{"endpoints": ["a", "b"], "availability": 0.9}], "need a name"),
        ([{"endpoints": [], "availability": 0.9}], "list of endpoint names"),
        (["api"], "expected a mapping"),
    ]  # fmt: skip
    for value, match in bad:
        with pytest.raises(ConfigurationError, match=match):
            from_config(value)


def test_a_threshold_off_the_buckets_names_the_boundaries() -> None:
    on = declare(Scope("app"), latency=("250ms", 0.99), source="s")
    off = declare(Scope("app"), latency=("300ms", 0.99), source="s")
    assert threshold_problem(on, DEFAULT_BUCKETS) is None
    problem = threshold_problem(off, DEFAULT_BUCKETS)
    assert problem is not None
    assert "300 ms" in problem
    assert "0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5" in problem
    assert "add 0.3 to APPMETRICS_BUCKETS" in problem


def test_init_app_refuses_a_latency_objective_off_the_buckets() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.slo(latency=("300ms", 0.99))
    def search() -> str:
        return "ok"

    app = Flask("slo_refused")
    app.add_url_rule("/search", view_func=search)
    with pytest.raises(ConfigurationError, match="not a bucket boundary") as raised:
        metrics.init_app(app)
    assert raised.value.key.startswith("@metrics.slo on '")
    assert raised.value.key.endswith("<locals>.search'")
    assert "appmetrics" not in app.extensions  # nothing half done

    # With the bound among the buckets, the same declaration is fine.
    fine = Flask("slo_fine")
    fine.config["APPMETRICS_BUCKETS"] = (0.1, 0.3, 1.0)
    fine.add_url_rule("/search", view_func=search)
    metrics.init_app(fine)


def test_config_objectives_are_checked_at_init_app() -> None:
    app = Flask("slo_config")
    app.config["APPMETRICS_SLOS"] = [{"latency": ("0.2s", 0.9)}]
    with pytest.raises(ConfigurationError, match=r"APPMETRICS_SLOS\[0\].*0.2"):
        FlaskMetrics(app, registry=CollectorRegistry())
    cases: list[tuple[object, bool]] = [
        (7, True), (6, False), (366, True), (400, False), ("30", True), ("a month", False),
    ]  # fmt: skip
    for days, ok in cases:
        app = Flask("slo_days")
        app.config["APPMETRICS_SLO_WINDOW_DAYS"] = days
        if ok:
            FlaskMetrics(app, registry=CollectorRegistry())
        else:
            with pytest.raises(ConfigurationError, match="APPMETRICS_SLO_WINDOW_DAYS"):
                FlaskMetrics(app, registry=CollectorRegistry())


def test_a_declaration_after_init_app_is_checked_against_that_app() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("slo_late")
    metrics.init_app(app)
    with pytest.raises(ConfigurationError, match="not a bucket boundary"):
        metrics.slo(latency=("300ms", 0.99))(lambda: "ok")
    with pytest.raises(ConfigurationError, match="availability must be"):
        metrics.slo(availability=2)
    with pytest.raises(TypeError, match="decorates a view or a blueprint"):
        metrics.slo(availability=0.9)(42)  # type: ignore[arg-type]
    blueprint = Blueprint("bp", __name__)
    assert metrics.slo(availability=0.9)(blueprint) is blueprint
    with pytest.raises(ValueError, match="not both"):
        metrics.add_slo(availability=0.9, blueprint="a", endpoints=["b"])
