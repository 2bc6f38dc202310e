"""Protected ``/metrics`` and health details: bearer token, basic auth, a user decorator."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import wraps
from typing import Any

import pytest
from flask import Flask, Response, abort, make_response, redirect, request
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import ConfigurationError, FlaskMetrics
from tests.support.apps import AppFactory

TOKEN = "s3cret-token-0123456789"
SUMMARY = {"status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users"}


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_refused(response: Any, *schemes: str) -> None:
    assert response.status_code == 401
    challenges = response.headers.getlist("WWW-Authenticate")
    assert [c.split(" ")[0] for c in challenges] == list(schemes)
    # No metric data: the body is the fixed refusal text.
    assert response.data == b"401 Unauthorized\n"
    assert response.headers["Cache-Control"] == "no-store"


def _families(response: Any) -> set[str]:
    assert response.status_code == 200
    return {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}


def test_metrics_are_public_without_auth_config(client: FlaskClient) -> None:
    assert "http_requests" in _families(client.get("/metrics"))


@pytest.mark.parametrize(
    "headers",
    [{}, _bearer("wrong-token-0123456789"), _bearer(""), {"Authorization": TOKEN}],
    ids=["missing", "wrong", "empty", "no-scheme"],
)
def test_bearer_token_refuses_bad_credentials(
    app_factory: AppFactory, registry: CollectorRegistry, headers: dict[str, str]
) -> None:
    client = app_factory({"APPMETRICS_AUTH_TOKEN": TOKEN}).test_client()
    _assert_refused(client.get("/metrics", headers=headers), "Bearer")
    # The refusal is itself a measured request.
    sample = ("http_requests_total", {"method": "GET", "endpoint": "/metrics", "status": "401"})
    assert registry.get_sample_value(*sample) == 1.0


def test_bearer_token_admits_the_token(app_factory: AppFactory) -> None:
    client = app_factory({"APPMETRICS_AUTH_TOKEN": TOKEN}).test_client()
    assert "http_requests" in _families(client.get("/metrics", headers=_bearer(TOKEN)))
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert "http_requests" in _families(client.get("/metrics", headers=lower))


def test_basic_auth(app_factory: AppFactory) -> None:
    config = {"APPMETRICS_AUTH_USERNAME": "prometheus", "APPMETRICS_AUTH_PASSWORD": "pässword"}
    client = app_factory(config).test_client()
    assert "http_requests" in _families(
        client.get("/metrics", headers=_basic("prometheus", "pässword"))
    )
    _assert_refused(client.get("/metrics", headers=_basic("prometheus", "wrong")), "Basic")
    _assert_refused(client.get("/metrics", headers=_basic("other", "pässword")), "Basic")
    _assert_refused(client.get("/metrics", headers=_bearer("pässword")), "Basic")
    _assert_refused(client.get("/metrics"), "Basic")


def test_token_and_basic_together_accept_either(app_factory: AppFactory) -> None:
    config = {
        "APPMETRICS_AUTH_TOKEN": TOKEN,
        "APPMETRICS_AUTH_USERNAME": "u",
        "APPMETRICS_AUTH_PASSWORD": "p",
    }
    client = app_factory(config).test_client()
    _assert_refused(client.get("/metrics"), "Bearer", "Basic")
    assert _families(client.get("/metrics", headers=_bearer(TOKEN)))
    assert _families(client.get("/metrics", headers=_basic("u", "p")))


def test_health_summary_stays_public_and_details_need_credentials(
    app_factory: AppFactory,
) -> None:
    client = app_factory({"APPMETRICS_AUTH_TOKEN": TOKEN}).test_client()
    public = client.get("/api/health")
    assert public.status_code == 200
    assert set(public.get_json()) == SUMMARY
    full = client.get("/api/health", headers=_bearer(TOKEN)).get_json()
    assert set(full) > SUMMARY
    assert "checks" in full
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "pass"}
    assert "checks" in client.get("/readyz", headers=_bearer(TOKEN)).get_json()
    ietf = client.get("/api/health", headers={"Accept": "application/health+json"}).get_json()
    assert set(ietf) == {"status", "description"}


def test_health_all_protects_health_but_not_liveness(app_factory: AppFactory) -> None:
    config = {"APPMETRICS_AUTH_TOKEN": TOKEN, "APPMETRICS_AUTH_HEALTH": "all"}
    client = app_factory(config).test_client()
    for path in ("/api/health", "/readyz"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"recent_errors" not in response.data
        assert client.get(path, headers=_bearer(TOKEN)).status_code == 200
    assert client.get("/livez").status_code == 200


def test_health_none_leaves_details_public(app_factory: AppFactory) -> None:
    config = {"APPMETRICS_AUTH_TOKEN": TOKEN, "APPMETRICS_AUTH_HEALTH": "none"}
    client = app_factory(config).test_client()
    assert "checks" in client.get("/api/health").get_json()
    _assert_refused(client.get("/metrics"), "Bearer")


# -- a decorator of the app's own ----------------------------------------------------------

View = Callable[..., Any]


def require_admin_header(view: View) -> View:
    """What an app's own decorator looks like: refuses with its own response."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            return Response("admins only", status=403)
        return view(*args, **kwargs)

    return wrapper


def abort_unless_admin(view: View) -> View:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            abort(401)
        return view(*args, **kwargs)

    return wrapper


def _app(registry: CollectorRegistry, auth: Callable[[View], View], **config: Any) -> Flask:
    app = Flask("decorated")
    app.config.update(config)
    FlaskMetrics(registry=registry, auth=auth).init_app(app)
    return app


def test_user_decorator_guards_metrics_with_its_own_refusal(registry: CollectorRegistry) -> None:
    client = _app(registry, require_admin_header).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 403
    assert refused.data == b"admins only"
    assert _families(client.get("/metrics", headers={"X-Admin": "yes"}))
    assert set(client.get("/api/health").get_json()) == SUMMARY
    assert "checks" in client.get("/api/health", headers={"X-Admin": "yes"}).get_json()


def test_user_decorator_that_aborts(registry: CollectorRegistry) -> None:
    client = _app(registry, abort_unless_admin).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert b"http_requests" not in refused.data
    assert _families(client.get("/metrics", headers={"X-Admin": "yes"}))


def test_user_decorator_or_token(registry: CollectorRegistry) -> None:
    client = _app(registry, require_admin_header, APPMETRICS_AUTH_TOKEN=TOKEN).test_client()
    assert _families(client.get("/metrics", headers={"X-Admin": "yes"}))
    assert _families(client.get("/metrics", headers=_bearer(TOKEN)))
    # Neither: the scraper-friendly challenge, since credentials are configured.
    _assert_refused(client.get("/metrics"), "Bearer")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"APPMETRICS_AUTH_USERNAME": "u"}, "APPMETRICS_AUTH_PASSWORD"),
        ({"APPMETRICS_AUTH_PASSWORD": "p"}, "APPMETRICS_AUTH_USERNAME"),
        ({"APPMETRICS_AUTH_TOKEN": ""}, "APPMETRICS_AUTH_TOKEN"),
        (
            {"APPMETRICS_AUTH_TOKEN": TOKEN, "APPMETRICS_AUTH_HEALTH": "some"},
            "APPMETRICS_AUTH_HEALTH",
        ),
    ],
)
def test_bad_auth_config_is_refused_at_start(
    app_factory: AppFactory, config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        app_factory(config)
    assert info.value.key == key


# -- the decorator's own refusal is the answer of every protected endpoint ------------------


def abort_403_unless_admin(view: View) -> View:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def redirect_unless_admin(view: View) -> View:
    """``login_required`` style: a redirect to the login page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            return redirect("/login")
        return view(*args, **kwargs)

    return wrapper


def raise_redirect_unless_admin(view: View) -> View:
    """A redirect raised, as ``abort(redirect(...))`` does."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            abort(redirect("/login"))
        return view(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("path", ["/api/health", "/readyz", "/status", "/status?format=json"])
@pytest.mark.parametrize(
    ("decorator", "code"),
    [
        (abort_unless_admin, 401),
        (abort_403_unless_admin, 403),
        (redirect_unless_admin, 302),
        (raise_redirect_unless_admin, 302),
    ],
    ids=["abort-401", "abort-403", "redirect", "raised-redirect"],
)
def test_decorator_refusal_of_protected_health_is_returned_as_is(
    registry: CollectorRegistry, decorator: Callable[[View], View], code: int, path: str
) -> None:
    client = _app(registry, decorator, APPMETRICS_AUTH_HEALTH="all").test_client()
    refused = client.get(path)
    # The decorator's answer, not our 503 "unhealthy": a load balancer keeps the instance.
    assert refused.status_code == code
    if code == 302:
        assert refused.headers["Location"] == "/login"
    assert b"unhealthy" not in refused.data
    assert (
        registry.get_sample_value("flask_appmetrics_internal_errors_total", {"component": "health"})
        == 0.0  # exported at 0 from the start, never counted
    )
    assert (
        registry.get_sample_value("flask_appmetrics_internal_errors_total", {"component": "readyz"})
        == 0.0  # exported at 0 from the start, never counted
    )
    assert (
        registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "status_page"}
        )
        == 0.0  # exported at 0 from the start, never counted
    )
    allowed = client.get(path, headers={"X-Admin": "yes"})
    assert allowed.status_code == 200


def test_decorator_refusal_goes_through_the_apps_error_handler(registry: CollectorRegistry) -> None:
    app = _app(registry, abort_unless_admin, APPMETRICS_AUTH_HEALTH="all")

    @app.errorhandler(401)
    def login_first(_: Exception) -> tuple[dict[str, str], int]:
        return {"error": "log in first"}, 401

    response = app.test_client().get("/api/health")
    assert (response.status_code, response.get_json()) == (401, {"error": "log in first"})


# -- any exception of the decorator is a refusal, decided once per request ------------------


class NotLoggedIn(Exception):
    """An auth extension's own exception (not an HTTPException)."""


def raise_own_exception_unless_admin(view: View) -> View:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("X-Admin") != "yes":
            raise NotLoggedIn
        return view(*args, **kwargs)

    return wrapper


def test_decorator_exception_is_a_refusal_answered_by_the_apps_handler(
    registry: CollectorRegistry,
) -> None:
    app = _app(registry, raise_own_exception_unless_admin)

    @app.errorhandler(NotLoggedIn)
    def not_logged_in(_: Exception) -> tuple[dict[str, str], int]:
        return {"error": "log in first"}, 401

    client = app.test_client()
    for path in ("/metrics", "/status"):
        refused = client.get(path)
        assert (refused.status_code, refused.get_json()) == (401, {"error": "log in first"})
    # The summary and readiness stay public: the exception only hides the details.
    health = client.get("/api/health")
    assert (health.status_code, set(health.get_json())) == (200, SUMMARY)
    assert client.get("/readyz").get_json() == {"status": "pass"}
    assert "checks" in client.get("/api/health", headers={"X-Admin": "yes"}).get_json()


def test_decorator_post_processing_the_view_result_still_admits(
    registry: CollectorRegistry,
) -> None:
    def wrap_result(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = make_response(view(*args, **kwargs))
            response.headers["X-Seen"] = "1"
            return response

        return wrapper

    client = _app(registry, wrap_result).test_client()
    assert _families(client.get("/metrics"))
    assert "checks" in client.get("/api/health").get_json()


def test_decorator_refusing_with_a_non_response_is_a_401_not_a_500(
    registry: CollectorRegistry,
) -> None:
    def refuse_with_none(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return None

        return wrapper

    client = _app(registry, refuse_with_none).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/api/health").status_code == 200


def test_decision_is_made_per_request_within_one_app_context(registry: CollectorRegistry) -> None:
    calls: list[str | None] = []

    def counting(view: View) -> View:
        inner = require_admin_header(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(request.headers.get("X-Admin"))
            return inner(*args, **kwargs)

        return wrapper

    app = _app(registry, counting)
    client = app.test_client()
    # One pushed app context (one flask.g) around several requests, as tests often do.
    with app.app_context():
        assert client.get("/metrics").status_code == 403
        assert _families(client.get("/metrics", headers={"X-Admin": "yes"}))
        assert client.get("/metrics").status_code == 403
    assert calls == [None, "yes", None]
