"""Declarations resolved against a real app's URL rules: which (method, endpoint) labels
each objective counts, and what cannot be used."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.slo.routes import Resolution, RouteMatch, Selection


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    return wrapper


def resolution(app: Flask) -> Resolution:
    state = FlaskMetrics.state(app)
    assert state is not None
    return state.slo.resolution()


def selections(app: Flask) -> dict[tuple[str, str], Selection]:
    return {r.objective.key: r.selection for r in resolution(app).objectives}


def test_a_view_is_found_through_its_decorators_and_on_every_rule() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("routes_view")
    metrics.init_app(app)

    @app.get("/search")
    @app.get("/search/<term>")
    @login_required
    @metrics.slo(availability=0.999)
    def search(term: str = "") -> str:
        return term

    assert selections(app) == {
        ("search", "availability"): Selection((RouteMatch("/search"), RouteMatch("/search/<term>")))
    }


def test_views_sharing_a_rule_count_their_own_methods() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("routes_methods")
    metrics.init_app(app)

    @app.get("/items")
    @metrics.slo(availability=0.999)
    def list_items() -> str:
        return "[]"

    @app.post("/items")
    def create_item() -> str:
        return "{}"

    selection = selections(app)[("list_items", "availability")]
    assert selection == Selection((RouteMatch("/items", ("GET", "HEAD")),))
    assert selection.matches("GET", "/items")
    assert not selection.matches("POST", "/items")


def test_blueprint_scope_covers_nested_blueprints_and_the_app_scope_leaves_ours_out() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    parent, child = Blueprint("shop", __name__), Blueprint("cart", __name__)

    @parent.get("/shop")
    def shop() -> str:
        return "shop"

    @child.get("/cart")
    def cart() -> str:
        return "cart"

    parent.register_blueprint(child)
    metrics.slo(availability=0.99)(parent)
    metrics.slo(availability=0.995, name="basket")(child)
    app = Flask("routes_blueprints")
    app.config["APPMETRICS_SLOS"] = [{"name": "everything", "availability": 0.9}]
    app.register_blueprint(parent)

    @app.get("/")
    def index() -> str:
        return "home"

    metrics.init_app(app)
    found = selections(app)
    assert found[("shop", "availability")].include == (
        RouteMatch("/cart"),
        RouteMatch("/shop"),
    )
    assert found[("basket", "availability")].include == (RouteMatch("/cart"),)
    everything = found[("everything", "availability")]
    assert everything.include is None
    assert everything.exclude == ("/api/health", "/livez", "/metrics", "/readyz", "/status")
    assert everything.matches("GET", "/")
    assert everything.matches("GET", "<unmatched>")
    assert not everything.matches("GET", "/metrics")


def test_what_cannot_be_used_is_a_problem_and_what_this_app_lacks_a_note() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.slo(availability=0.99)
    def elsewhere() -> str:  # routed by another app only
        return ""

    metrics.add_slo(availability=0.99, blueprint="admin")  # not registered here
    app = Flask("routes_problems")
    app.config["APPMETRICS_SLOS"] = [
        {"endpoints": ["missing"], "availability": 0.99},
        {"blueprint": "nowhere", "availability": 0.99},
        {"name": "home", "availability": 0.99},
        {"name": "home", "availability": 0.999, "endpoints": ["home"]},
    ]

    @app.get("/")
    def home() -> str:
        return ""

    metrics.init_app(app)
    found = resolution(app)
    assert [r.objective.key for r in found.objectives] == [("home", "availability")]
    assert len(found.problems) == 3, found.problems
    missing, nowhere, taken = found.problems
    assert missing.startswith("APPMETRICS_SLOS[0]: ")
    assert "'missing'" in missing
    assert nowhere.startswith("APPMETRICS_SLOS[1]: blueprint 'nowhere' serves no route")
    assert "APPMETRICS_SLOS[3]" in taken
    assert "already declared by APPMETRICS_SLOS[2]" in taken
    assert len(found.notes) == 2
    assert "elsewhere" in found.notes[0]
    assert "blueprint 'admin'" in found.notes[1]


def test_views_declared_after_init_app_are_resolved_at_the_first_request() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("routes_late")
    metrics.init_app(app)
    assert resolution(app).objectives == ()

    @app.get("/late")
    @metrics.slo(availability=0.99)
    def late() -> str:
        return "late"

    assert [r.objective.name for r in resolution(app).objectives] == ["late"]
    app.test_client().get("/late").close()
    state = FlaskMetrics.state(app)
    assert state is not None
    (status,) = state.slo.statuses()
    assert (status.period.requests, status.period.bad) == (1, 0)
