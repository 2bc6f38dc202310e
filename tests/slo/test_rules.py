"""The generated rule and test documents: valid YAML that reads back as generated, the
project's naming, and selectors that match exactly the objective's routes."""

from __future__ import annotations

import re
from typing import Any

import yaml
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.config import DEFAULT_BUCKETS
from flask_appmetrics.slo.objectives import Objective, Scope
from flask_appmetrics.slo.routes import ResolvedObjective, RouteMatch, Selection
from flask_appmetrics.slo.rules import (
    RuleOptions,
    header,
    rule_tests_document,
    rules_document,
    selectors,
    to_yaml,
)

OPTIONS = RuleOptions(30 * 86_400.0, DEFAULT_BUCKETS, app_name="shop")


def resolved(objective: Objective, selection: Selection) -> ResolvedObjective:
    return ResolvedObjective(objective, selection, "test", Scope("app"))


ODD = resolved(
    Objective("files.v2", "latency", 0.95, 0.25),
    Selection((RouteMatch('/files/<path:name>.txt'), RouteMatch('/q"uote'),
               RouteMatch("/x", ("GET", "HEAD")))),
)  # fmt: skip


def test_selectors_escape_regex_and_quotes() -> None:
    assert selectors(ODD.selection, None) == (
        r'endpoint=~"/files/<path:name>\\.txt|/q\"uote"',
        'endpoint="/x",method=~"GET|HEAD"',
    )
    assert selectors(Selection(None, ("/metrics", "/api/health")), "api") == (
        'job="api",endpoint!~"/metrics|/api/health"',
    )
    assert selectors(Selection(None), None) == ("",)


def test_documents_read_back_as_generated() -> None:
    objectives = [ODD, resolved(Objective("app", "availability", 0.999), Selection(None))]
    for document in (
        rules_document(objectives, OPTIONS),
        rule_tests_document(objectives, "../rules/x.yml", OPTIONS),
    ):
        text = to_yaml(document, header(OPTIONS, "Rules"))
        assert text.startswith("# Rules for the service level objectives of the Flask app")
        assert yaml.safe_load(text) == document


def test_names_follow_the_ops_kit_conventions() -> None:
    objective = resolved(Objective("api", "availability", 0.999), Selection(None))
    (group,) = rules_document([objective], OPTIONS)["groups"]
    assert group["name"] == "flask_appmetrics.slo.api.availability"
    records = [r["record"] for r in group["rules"] if "record" in r]
    assert all(re.fullmatch(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+", name) for name in records)
    assert "slo:error_budget_remaining:ratio" in records
    assert {f"slo:burn_rate:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h", "3d")} <= set(records)
    assert "slo:sli_error:ratio_rate30d" in records
    alerts: list[dict[str, Any]] = [r for r in group["rules"] if "alert" in r]
    assert [(a["alert"], a["labels"]["severity"]) for a in alerts] == [
        ("FlaskAppSLOFastBurn", "critical"),
        ("FlaskAppSLOSlowBurn", "critical"),
        ("FlaskAppSLOSteadyBurn", "warning"),
    ]
    assert alerts[0]["expr"] == (
        'slo:burn_rate:ratio_rate1h{slo="api",sli="availability"} > 14.4\nand\n'
        'slo:burn_rate:ratio_rate5m{slo="api",sli="availability"} > 14.4'
    )


def test_a_longer_period_changes_the_budget_window_and_thresholds() -> None:
    app = Flask("rules_period")
    app.config["APPMETRICS_SLO_WINDOW_DAYS"] = 28
    app.config["APPMETRICS_SLOS"] = [{"name": "all", "availability": 0.99}]
    FlaskMetrics(app, registry=CollectorRegistry())
    state = FlaskMetrics.state(app)
    assert state is not None
    (objective,) = state.slo.resolution().objectives
    options = RuleOptions(state.slo.period_seconds, DEFAULT_BUCKETS)
    (group,) = rules_document([objective], options)["groups"]
    exprs = {r.get("record") or r["alert"]: r["expr"] for r in group["rules"]}
    assert "[28d]" in exprs["slo:sli_error:ratio_rate28d"]
    assert exprs["FlaskAppSLOFastBurn"].endswith("> 13.44")  # 2% of 28 days in 1 h
