"""``metrics.exclude``: views and blueprints left out of every HTTP family and of health."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.views import MethodView
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, get_health_status
from tests.support.wsgi import serve

HTTP_FAMILIES = (
    "http_requests_total",
    "http_request_duration_seconds",
    "http_requests_in_progress",
    "application_errors_total",
    "http_request_size_bytes",
    "http_response_size_bytes",
)


def endpoints_on_page(registry: CollectorRegistry) -> set[str]:
    """Every ``endpoint`` label value in the HTTP families."""
    return {
        s.labels["endpoint"]
        for metric in registry.collect()
        if metric.name in HTTP_FAMILIES
        for s in metric.samples
        if "endpoint" in s.labels
    }


def logged_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator as auth extensions write them (functools.wraps)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    return wrapper


@pytest.fixture
def setup(registry: CollectorRegistry) -> tuple[Flask, FlaskMetrics]:
    metrics = FlaskMetrics(registry=registry)
    app = Flask("excluding")
    # Every HTTP family, the opt-in ones too, so that none may show an excluded view.
    app.config.update(APPMETRICS_BODY_SIZES=True, APPMETRICS_QUEUE_TIME=True)

    @app.get("/kept")
    def kept() -> str:
        return "kept"

    @app.get("/below")
    @metrics.exclude
    def below() -> str:
        return "below"

    @metrics.exclude
    @app.get("/above")
    def above() -> str:
        return "above"

    @app.get("/wrapped")
    @logged_in
    @metrics.exclude
    def wrapped() -> str:
        return "wrapped"

    @app.get("/failing")
    @metrics.exclude
    def failing() -> str:
        raise RuntimeError("excluded, failing")

    class Things(MethodView):
        def get(self) -> str:
            return "things"

    metrics.exclude(Things)
    app.add_url_rule("/things", view_func=Things.as_view("things"))

    admin = Blueprint("admin", __name__)

    @admin.get("/admin/users/<int:user_id>")
    def user(user_id: int) -> str:
        return "user"

    reports = Blueprint("reports", __name__)

    @reports.get("/admin/reports")
    def report() -> str:
        return "report"

    admin.register_blueprint(reports)  # nested: excluded with its parent
    metrics.exclude(admin)
    app.register_blueprint(admin)

    named = Blueprint("thirdparty", __name__)

    @named.get("/thirdparty")
    def thirdparty() -> str:
        return "thirdparty"

    metrics.exclude("thirdparty")  # a blueprint another extension registers, by name
    app.register_blueprint(named)
    metrics.init_app(app)
    return app, metrics


def test_excluded_views_and_blueprints_are_in_no_family(
    setup: tuple[Flask, FlaskMetrics], registry: CollectorRegistry
) -> None:
    app, _ = setup
    paths = [
        "/below", "/above", "/wrapped", "/things", "/admin/users/1", "/admin/reports",
        "/thirdparty", "/failing",
    ]  # fmt: skip
    for path in paths * 2:  # the second time from the kept decision
        expected = 500 if path == "/failing" else 200
        assert serve(app, path, headers={"X-Request-Start": "t=1"}).status == expected
    assert serve(app, "/kept").status == 200

    assert endpoints_on_page(registry) == {"/kept"}
    with app.app_context():
        health = get_health_status()
    assert health["recent_requests_5min"] == 1
    assert health["recent_errors_5min"] == 0


def test_exclude_refuses_what_is_no_view_or_blueprint(metrics: FlaskMetrics) -> None:
    with pytest.raises(TypeError, match="not int"):
        metrics.exclude(3)
    with pytest.raises(TypeError):
        metrics.exclude("")


def test_exclusions_belong_to_their_extension(registry: CollectorRegistry) -> None:
    excluding = FlaskMetrics(registry=registry)
    other_registry = CollectorRegistry()
    other = FlaskMetrics(registry=other_registry)

    def shared() -> str:
        return "shared"

    excluding.exclude(shared)
    apps = []
    for extension in (excluding, other):
        app = Flask("shared")
        app.add_url_rule("/shared", view_func=shared)
        extension.init_app(app)
        serve(app, "/shared")
        apps.append(app)
    assert endpoints_on_page(registry) == set()
    assert endpoints_on_page(other_registry) == {"/shared"}


@pytest.mark.parametrize("first", ["internal", "public"])
def test_views_of_one_rule_text_are_excluded_each_on_its_own(
    registry: CollectorRegistry, first: str
) -> None:
    # Subdomain routing: two views on "/", one excluded. Whichever is requested first, the
    # other keeps its own decision.
    metrics = FlaskMetrics(registry=registry)
    app = Flask("subdomains", subdomain_matching=True)
    app.config["SERVER_NAME"] = "example.com"

    @app.get("/", subdomain="internal", endpoint="internal_index")
    @metrics.exclude
    def internal_index() -> str:
        return "internal"

    @app.get("/", endpoint="public_index")
    def public_index() -> str:
        return "public"

    metrics.init_app(app)
    hosts = {"internal": "internal.example.com", "public": "example.com"}
    for which in (first, *(h for h in hosts if h != first)):
        assert serve(app, "/", headers={"Host": hosts[which]}).body == which.encode()
    labels = {"method": "GET", "endpoint": "/", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 1.0
