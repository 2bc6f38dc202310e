"""Health from the error budget: with objectives, /api/health, the IETF format and the
status page report each one's burn rates and budget, and a fast burn degrades the app;
without, the fixed thresholds stand."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask, abort
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.wsgi import serve

TOKEN = "a-token-long-enough-to-use"


def make_app(config: dict[str, Any] | None = None, *, objectives: bool = True) -> Flask:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("slo_health")
    app.config["APPMETRICS_BUCKETS"] = (0.025, 0.1, 1.0)
    app.config.update(config or {})
    metrics.init_app(app)

    def work(fail: int) -> str:
        if fail:
            abort(500)
        return "ok"

    app.add_url_rule("/work/<int:fail>", "work", work)

    def slow() -> str:
        time.sleep(0.03)  # past the 25 ms threshold whatever the machine's load
        return "slow"

    app.add_url_rule("/slow", "slow", slow)
    if objectives:
        metrics.slo(availability=0.999)(work)
        metrics.slo(latency=("25ms", 0.9))(slow)
    return app


def traffic(app: Flask, good: int, bad: int) -> None:
    for _ in range(good):
        assert serve(app, "/work/0").status == 200
    for _ in range(bad):
        assert serve(app, "/work/1").status == 500


def health(app: Flask, **headers: str) -> dict[str, Any]:
    served = serve(app, "/api/health", headers=headers)
    body: dict[str, Any] = served.json()
    body["http_status"] = served.status
    return body


def objective(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [o for o in body["objectives"] if o["name"] == name]
    return found


def test_a_fast_burn_degrades_the_app_and_says_which_objective() -> None:
    app = make_app()
    traffic(app, good=95, bad=5)  # 5% errors: 50 times a 99.9% objective's budget
    for _ in range(3):  # probes are not the app's requests
        serve(app, "/api/health")
    body = health(app)
    assert (body["status"], body["http_status"]) == ("degraded", 200)
    work = objective(body, "work")
    assert work["scope"] == "process"
    assert (work["requests"], work["bad_requests"]) == (100, 5)
    assert work["burn_rates"]["1h"] == pytest.approx(50.0)
    assert work["burn_rates"]["5m"] == pytest.approx(50.0)
    assert work["burning"] == ["fast", "slow", "steady"]
    assert work["budget_remaining"] == pytest.approx(-49.0)
    assert work["status"] == "degraded"
    assert body["reasons"] == [
        "objective 'work' (availability) burns its error budget 50.0x over 1h and 50.0x "
        "over 5m (fast burn above 14.4x)"
    ]
    slow = objective(body, "slow")
    assert (slow["sli"], slow["threshold_ms"], slow["requests"]) == ("latency", 25.0, 0)


def test_latency_objectives_count_slow_requests() -> None:
    app = make_app({"APPMETRICS_HEALTH_MIN_REQUESTS": 3})
    for _ in range(3):
        serve(app, "/slow")
    slow = objective(health(app), "slow")
    assert (slow["requests"], slow["bad_requests"]) == (3, 3)
    assert slow["burn_rates"]["5m"] == pytest.approx(10.0)  # every request bad, 10% budget
    assert slow["status"] == "healthy"  # 10x is below the fast burn's 14.4x


def test_the_budget_replaces_the_fixed_degraded_thresholds() -> None:
    # 10% errors: the fixed 5% threshold degrades an app without objectives ...
    plain = make_app(objectives=False)
    traffic(plain, good=90, bad=10)
    body = health(plain)
    assert body["status"] == "degraded"
    assert "objectives" not in body
    # ... but it burns an 80% objective's budget at half the sustainable rate: the
    # budget decides.
    lenient = make_app(
        {"APPMETRICS_SLOS": [{"name": "all", "availability": 0.8}]}, objectives=False
    )
    traffic(lenient, good=90, bad=10)
    body = health(lenient)
    assert body["status"] == "healthy", body["reasons"]
    assert objective(body, "all")["burn_rates"]["1h"] == pytest.approx(0.5)
    # A majority of failures is still unhealthy: the instance is not doing its job.
    traffic(lenient, good=0, bad=100)
    body = health(lenient)
    assert (body["status"], body["http_status"]) == ("unhealthy", 503)


def test_too_few_requests_do_not_degrade() -> None:
    app = make_app()
    traffic(app, good=0, bad=3)  # below APPMETRICS_HEALTH_MIN_REQUESTS (20)
    body = health(app)
    assert body["status"] == "healthy"
    assert objective(body, "work")["burning"] == ["fast", "slow", "steady"]


def test_ietf_format_status_page_and_guard() -> None:
    app = make_app({"APPMETRICS_AUTH_TOKEN": TOKEN})
    traffic(app, good=95, bad=5)
    public = health(app)
    assert "objectives" not in public  # details need credentials
    assert public["status"] == "degraded"
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    ietf = serve(
        app, "/api/health", headers={**authorised, "Accept": "application/health+json"}
    ).json()
    (entry,) = ietf["checks"]["work:availabilityBurnRate"]
    assert (entry["status"], entry["observedValue"]) == ("warn", pytest.approx(50.0))
    assert entry["output"] == (
        "99.9% of requests do not fail with a 5xx: error budget burning 50.00x over 1h, "
        "-4900.0% of it left (this process's requests)"
    )
    data = serve(app, "/status?format=json", headers=authorised).json()
    assert [o["name"] for o in data["objectives"]] == ["work", "slow"]
    page = serve(app, "/status", headers={**authorised, "Accept": "text/html"}).text
    assert 'id="objectives-section"' in page
