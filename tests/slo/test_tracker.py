"""The tracker's side of request recording: what the instrumentation hands it per request,
and a failure of its own that never reaches the request."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.slo.objectives import Scope, declare
from flask_appmetrics.slo.tracker import SloTracker
from tests.support.clock import FakeClock
from tests.support.wsgi import serve


def test_the_route_observer_gets_each_app_request_with_its_labels() -> None:
    app = Flask("tracker_hook")
    app.config["APPMETRICS_EXCLUDE_PATHS"] = ("/private",)
    FlaskMetrics(app, registry=CollectorRegistry())

    @app.route("/items/<int:item_id>", methods=["GET", "DELETE"])
    def item(item_id: int) -> str:
        return "ok"

    @app.get("/private/x")
    def private() -> str:
        return "hidden"

    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.instrumentation.route_observer == state.slo.observe
    seen: list[tuple[str, str, float, int]] = []
    state.instrumentation.route_observer = lambda *args: seen.append(args)
    serve(app, "/items/3", method="DELETE")
    serve(app, "/nowhere")
    serve(app, "/private/x")  # excluded: not recorded at all
    serve(app, "/api/health")  # ours: not the app's traffic
    serve(app, "/metrics")
    assert [(m, e, s) for m, e, _, s in seen] == [
        ("DELETE", "/items/<int:item_id>", 200),
        ("GET", "<unmatched>", 404),
    ]
    assert all(isinstance(d, float) and d >= 0 for _, _, d, _ in seen)


def test_a_failing_resolution_is_logged_and_counted_once_per_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[str] = []

    def routes() -> tuple[list[object], dict[str, object]]:
        raise RuntimeError("url map unreadable")

    tracker = SloTracker(
        lambda: [declare(Scope("app"), availability=0.99, source="s")],
        routes,  # type: ignore[arg-type]
        own_blueprints=frozenset(),
        buckets=(0.1, 1.0),
        period_seconds=30 * 86_400.0,
        min_requests=0,
        clock=FakeClock(),
        on_internal_error=errors.append,
    )
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        for _ in range(3):
            tracker.observe("GET", "/x", 0.01, 200)
    assert errors == ["slo"]
    assert len([r for r in caplog.records if "could not resolve" in r.getMessage()]) == 1
    assert tracker.safe_statuses() == ()
    assert errors == ["slo", "slo"]
