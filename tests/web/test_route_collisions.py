"""An app's own routes on our paths: refused at ``init_app``, or reported at the first request.

Werkzeug serves the first rule added for a path, so a clash is always someone's view
silently never called: the app's ``/api/health`` with its database check, or a
``/metrics`` the app protects itself.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
from flask import Blueprint, Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import (
    ConfigurationError,
    FlaskMetrics,
    RouteConflictError,
    RouteConflictWarning,
)

PATHS = [
    ("APPMETRICS_METRICS_PATH", "/metrics", "appmetrics_metrics.metrics"),
    ("APPMETRICS_HEALTH_PATH", "/api/health", "appmetrics_health.health"),
    ("APPMETRICS_LIVEZ_PATH", "/livez", "appmetrics_health.livez"),
    ("APPMETRICS_READYZ_PATH", "/readyz", "appmetrics_health.readyz"),
    ("APPMETRICS_STATUS_PATH", "/status", "appmetrics_status.status"),
]
IDS = [path for _, path, _ in PATHS]


def ops_blueprint(path: str) -> Blueprint:
    """What apps ship: their own health (with a database check) or protected metrics."""
    blueprint = Blueprint("ops", __name__)

    @blueprint.get(path)
    def own() -> dict[str, str]:
        return {"served_by": "the app"}

    return blueprint


def get(app: Flask, path: str) -> tuple[int, bytes]:
    response = app.test_client().get(path)
    try:
        return response.status_code, response.get_data()
    finally:
        response.close()


@pytest.mark.parametrize(("key", "path", "ours"), PATHS, ids=IDS)
def test_init_app_refuses_a_path_the_app_already_routes(key: str, path: str, ours: str) -> None:
    app = Flask("host")
    app.register_blueprint(ops_blueprint(path))
    metrics = FlaskMetrics(registry=CollectorRegistry())
    with pytest.raises(RouteConflictError) as info:
        metrics.init_app(app)
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert (error.key, error.path, error.endpoint) == (key, path, "ops.own")
    message = str(error)
    assert repr(path) in message
    assert "'ops.own'" in message
    assert f"Set {key} to another path" in message
    assert "None" in message
    # Refused before anything was installed: the app is as it was.
    assert "appmetrics" not in app.extensions
    assert not app.before_request_funcs.get(None)
    assert all(not r.endpoint.startswith("appmetrics_") for r in app.url_map.iter_rules())
    assert get(app, path) == (200, b'{"served_by":"the app"}\n')


@pytest.mark.parametrize(("key", "path", "ours"), PATHS, ids=IDS)
@pytest.mark.parametrize("moved", ["/ops/ours", None], ids=["moved", "off"])
def test_the_key_named_in_the_error_resolves_it(
    key: str, path: str, ours: str, moved: str | None
) -> None:
    app = Flask("host")
    app.register_blueprint(ops_blueprint(path))
    app.config[key] = moved
    FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    assert get(app, path) == (200, b'{"served_by":"the app"}\n')
    endpoints = {r.endpoint: r.rule for r in app.url_map.iter_rules()}
    if moved is None:
        assert ours not in endpoints
    else:
        assert endpoints[ours] == moved
        assert get(app, moved)[0] == 200


def test_a_view_registered_on_the_app_before_init_app_is_refused_too() -> None:
    app = Flask("host")
    app.add_url_rule("/api/health", "db_health", lambda: "db ok")
    with pytest.raises(RouteConflictError, match="APPMETRICS_HEALTH_PATH: '/api/health'"):
        FlaskMetrics(app, registry=CollectorRegistry())


def test_a_post_only_route_on_our_path_is_no_conflict() -> None:
    app = Flask("host")
    app.add_url_rule("/metrics", "push", lambda: "pushed", methods=["POST"])
    FlaskMetrics(app, registry=CollectorRegistry())
    assert get(app, "/metrics")[0] == 200
    assert app.test_client().post("/metrics").get_data() == b"pushed"


@pytest.mark.parametrize(("key", "path", "ours"), PATHS, ids=IDS)
def test_a_blueprint_registered_after_init_app_is_reported_at_the_first_request(
    key: str, path: str, ours: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The usual factory order: extensions first, blueprints after.
    app = Flask("host")
    FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    app.register_blueprint(ops_blueprint(path))
    with caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        with pytest.warns(RouteConflictWarning) as recorded:
            status, _ = get(app, "/livez" if path != "/livez" else "/metrics")
        assert status == 200  # the request that found it is served as usual
    assert len(recorded) == 1
    message = str(recorded[0].message)
    for name in ("'ops.own'", repr(path), repr(ours), key, "None"):
        assert name in message, name
    # Ours was added first, so werkzeug serves ours: the message says which one answers.
    assert "flask-appmetrics' view answers it" in message
    assert message in caplog.text
    # Once: later requests neither warn nor pay for the check.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get(app, path)[0] in (200, 503)
    assert all(
        type(hook).__name__ != "LateConflictCheck" for hook in app.before_request_funcs[None]
    )


def test_every_app_of_a_factory_is_checked() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    def create_app() -> Flask:
        app = Flask("host")
        metrics.init_app(app)
        app.register_blueprint(ops_blueprint("/api/health"))
        return app

    for _ in range(3):
        app = create_app()
        with pytest.warns(RouteConflictWarning, match="'ops.own'"):
            get(app, "/livez")


def test_warnings_as_errors_do_not_fail_the_request(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("host")
    FlaskMetrics(app, registry=CollectorRegistry())
    app.register_blueprint(ops_blueprint("/metrics"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get(app, "/livez")[0] == 200
    assert "'ops.own' was routed at '/metrics' after init_app" in caplog.text


def test_no_conflict_no_warning_and_the_hook_goes_away() -> None:
    app = Flask("host")
    FlaskMetrics(app, registry=CollectorRegistry())

    @app.get("/items")
    def items() -> dict[str, Any]:
        return {}

    assert len(app.before_request_funcs[None]) == 1  # the one-time check
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get(app, "/items")[0] == 200
    assert app.before_request_funcs[None] == []


def test_an_app_hook_answering_early_does_not_skip_the_check() -> None:
    app = Flask("host")

    @app.before_request
    def maintenance() -> tuple[str, int]:
        return "down for maintenance", 503

    FlaskMetrics(app, registry=CollectorRegistry())
    app.register_blueprint(ops_blueprint("/status"))
    with pytest.warns(RouteConflictWarning, match="APPMETRICS_STATUS_PATH"):
        assert get(app, "/items") == (503, b"down for maintenance")
