"""The status page's figures: traffic over time from readings of the registry, the busiest
endpoints, the LLM block, quota headroom, caches; and the template an app can replace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from flask_appmetrics import (
    FlaskMetrics,
    record_cache_event,
    record_gemini_usage,
    record_quota_usage,
)
from flask_appmetrics.web.status_data import quantile
from tests.support.status_apps import drive, drive_over_time, make_app, page_clock

INF = float("inf")


def data(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/status?format=json")
    body = response.get_json()
    assert isinstance(body, dict)
    return body


# -- quantiles as Prometheus computes them ---------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.055),  # rank 5 of 10: the 4th of the 8 in the (0.01, 0.1] bucket
        (0.1, 0.01),  # rank 1: the top of the first bucket
        (0.95, 0.75),  # rank 9.5: halfway through (0.5, 1]
    ],
)
def test_quantile_interpolates_within_its_bucket(q: float, expected: float) -> None:
    bounds = (0.01, 0.1, 0.5, 1.0, INF)
    cumulative = (1.0, 9.0, 9.0, 10.0, 10.0)
    assert quantile(q, bounds, cumulative) == pytest.approx(expected, rel=0.01)


def test_quantile_edges() -> None:
    assert quantile(0.5, (0.1, INF), (0.0, 0.0)) is None  # no observation
    assert quantile(0.5, (0.1, INF), (0.0, 4.0)) == 0.1  # beyond the last finite bound
    assert quantile(0.5, (), ()) is None


# -- traffic over time -------------------------------------------------------------------------


def test_each_interval_between_readings_is_a_point() -> None:
    app = make_app()
    clock = page_clock(app)
    drive_over_time(app, clock, [(30, 0), (15, 15), (6, 0)])
    traffic = data(app)["traffic"]
    points = traffic["points"]
    assert [p["end"] - p["start"] for p in points] == [30.0, 30.0, 30.0]
    assert [p["rps"] for p in points] == [1.0, 1.0, 0.2]
    assert [p["error_ratio"] for p in points] == [0.0, 0.5, 0.0]
    for p in points:
        assert 0 < p["p50_ms"] <= p["p95_ms"]
    assert traffic["window_seconds"] == 300.0
    assert traffic["since_start"]["requests"] == 66
    assert traffic["since_start"]["errors"] == 15
    assert points[-1]["end"] == traffic["now"]


def test_readings_are_kept_for_the_window_only() -> None:
    app = make_app({"APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": 60})
    clock = page_clock(app)
    drive_over_time(app, clock, [(1, 0)] * 6)  # six 30 s intervals: three minutes
    points = data(app)["traffic"]["points"]
    # One reading older than the window stays, as the start of the first interval.
    assert len(points) == 2
    assert points[0]["start"] <= clock.now - 60 < points[0]["end"]


def test_readings_closer_than_half_a_refresh_are_not_kept() -> None:
    app = make_app({"APPMETRICS_STATUS_REFRESH_SECONDS": 10})
    clock = page_clock(app)
    for _ in range(4):  # five polls in four seconds: one reading
        data(app)
        clock.advance(1.0)
    assert data(app)["traffic"]["points"] == []
    clock.advance(1.0)  # 5 s after the first: kept
    (point,) = data(app)["traffic"]["points"]
    assert point["end"] - point["start"] == 5.0


def test_the_pages_own_traffic_is_not_traffic() -> None:
    app = make_app()
    clock = page_clock(app)
    client = app.test_client()
    data(app)
    for path in ("/metrics", "/api/health", "/livez", "/readyz", "/status"):
        client.get(path).close()
    drive(app, ok=3, failed=0)
    clock.advance(30)
    body = data(app)
    assert [row["endpoint"] for row in body["endpoints"]["rows"]] == ["/work"]
    assert body["traffic"]["since_start"]["requests"] == 3


def test_busiest_endpoints_since_start_then_over_the_readings() -> None:
    app = make_app()
    clock = page_clock(app)
    assert data(app)["endpoints"] == {"span_seconds": None, "rows": []}
    drive(app, ok=4, failed=2)
    since_start = data(app)["endpoints"]  # one reading so far: no span, no rate
    assert since_start["span_seconds"] is None
    assert [(r["endpoint"], r["requests"], r["rps"]) for r in since_start["rows"]] == [
        ("/work", 4.0, None),
        ("/fail", 2.0, None),
    ]
    drive(app, ok=1, failed=6)
    clock.advance(20)
    rows = data(app)["endpoints"]
    assert rows["span_seconds"] == 20.0
    assert [(r["endpoint"], r["requests"], r["rps"], r["error_ratio"]) for r in rows["rows"]] == [
        ("/fail", 8.0, 0.4, 1.0),
        ("/work", 5.0, 0.25, 0.0),
    ]


# -- LLM, quota, caches ------------------------------------------------------------------------


def test_llm_quota_and_cache_figures(registry: CollectorRegistry) -> None:
    app = Flask("figures")
    app.config.update(APPMETRICS_QUOTA_RPM=10, APPMETRICS_QUOTA_TPD=10_000)
    FlaskMetrics(app, registry=registry)
    assert data(app)["llm"] is None  # no Gemini series: no LLM block
    with app.app_context():
        record_gemini_usage("/ask", "gemini-2.5-flash", input_tokens=800, output_tokens=200)
        record_gemini_usage("/ask", "gemini-2.5-flash", tokens=50, status="error")
        record_gemini_usage("/ask", "gemini-2.5-pro", input_tokens=1000, output_tokens=1000)
        record_quota_usage(requests=1, tokens=10)
        for hit in (True, True, True, False):
            record_cache_event(hit=hit, layer="redis")
        record_cache_event(hit=False, layer="memory")
    body = data(app)
    llm = body["llm"]
    assert (llm["calls"], llm["errors"], llm["tokens"]) == (3, 1, 3050)
    assert llm["calls_today"] == 4  # the quota's count: three calls and one record
    assert llm["cost_usd"] > 0
    assert llm["cost_today_usd"] == llm["cost_usd"]  # every call was today
    assert llm["budget_usd"] is None  # none configured
    assert [m["model"] for m in llm["models"]] == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert body["quota"] == [
        {"limit": "rpm", "label": "requests this minute", "used": 4, "max": 10},
        {"limit": "tpd", "label": "tokens today", "used": 3060, "max": 10_000},
    ]
    assert [(c["layer"], c["hits"], c["misses"], c["hit_ratio"]) for c in body["caches"]] == [
        ("memory", 0, 1, 0.0),
        ("redis", 3, 1, 0.75),
    ]


def test_cost_today_and_budget_show_when_exported(registry: CollectorRegistry) -> None:
    app = Flask("budget")
    app.config["APPMETRICS_GEMINI_DAILY_BUDGET_USD"] = 5
    FlaskMetrics(app, registry=registry)
    with app.app_context():
        # gemini-2.5-flash: 0.30 USD per million input tokens.
        record_gemini_usage("/ask", "gemini-2.5-flash", input_tokens=1_000_000)
    llm = data(app)["llm"]
    assert (llm["cost_today_usd"], llm["budget_usd"]) == (0.3, 5.0)


class Broken:
    """A collector of the app's own that fails: /metrics and the figures cannot be read."""

    def collect(self) -> list[Metric]:
        raise RuntimeError("collector down")


def test_figures_that_cannot_be_read_leave_the_verdict(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    state = FlaskMetrics.state(app)
    assert state is not None
    broken = Broken()
    state.registry.register(broken)  # type: ignore[arg-type]
    response = app.test_client().get("/status?format=json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "healthy"
    assert "traffic" not in body
    assert "collector down" in caplog.text
    state.registry.unregister(broken)  # type: ignore[arg-type]
    assert (
        state.registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "status_page"}
        )
        == 1.0
    )


# -- the template ------------------------------------------------------------------------------


def test_an_app_replaces_the_page_with_its_own_template(tmp_path: Path) -> None:
    (tmp_path / "appmetrics").mkdir()
    (tmp_path / "appmetrics" / "status.html").write_text(
        '{% extends "appmetrics/status_layout.html" %}\n'
        "{% block title %}Shop status: {{ status }}{% endblock %}\n"
        '{% block extra %}<section class="card" id="deploys">'
        "<h2>Deploys of {{ app_name }}</h2></section>{% endblock %}\n"
    )
    app = Flask("<i>shop</i>", template_folder=str(tmp_path))
    app.jinja_env.autoescape = False  # the app's own settings change nothing of ours
    FlaskMetrics(app, registry=CollectorRegistry())
    html = app.test_client().get("/status").get_data(as_text=True)
    assert "<title>Shop status: healthy</title>" in html
    assert "<h2>Deploys of &lt;i&gt;shop&lt;/i&gt;</h2>" in html  # still escaped
    assert 'id="chart-rps"' in html  # the rest of the layout is there


def test_a_broken_override_is_a_503_not_a_500(tmp_path: Path) -> None:
    (tmp_path / "appmetrics").mkdir()
    (tmp_path / "appmetrics" / "status.html").write_text("{{ no_such_value.field }}")
    app = Flask("shop", template_folder=str(tmp_path))
    FlaskMetrics(app, registry=CollectorRegistry())
    response = app.test_client().get("/status")
    assert response.status_code == 503
    assert app.test_client().get("/status?format=json").status_code == 200
