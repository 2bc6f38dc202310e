"""``FlaskMetrics(auth=...)`` with the real auth extensions apps use.

flask-jwt-extended's ``jwt_required()`` raises its own ``NoAuthorizationError`` (answered
by the error handlers ``JWTManager`` registers), Flask-Login's ``login_required`` returns a
redirect to the login view (or raises ``abort(401)`` without one), Flask-HTTPAuth's
``auth.login_required`` returns a 401 response. Whatever the decorator does:

* the public health summary and ``/readyz`` stay public and truthful (load balancers);
* what it protects is refused with the extension's own answer, never a 5xx of ours;
* an authorised client sees everything;
* the decorator runs at most once per request.

Requests are driven as a WSGI server does: call, read the body, close it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_httpauth import HTTPBasicAuth
from flask_jwt_extended import JWTManager, create_access_token, jwt_required
from flask_login import LoginManager, UserMixin, login_required, login_user
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import FlaskMetrics

View = Callable[..., Any]
SUMMARY = {"status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users"}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# Long enough for PyJWT's HMAC key length check.
JWT_KEY = "jwt-signing-key-for-tests-0123456789abcdef0123456789"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Host:
    """A host app protected by one real auth extension, and how a client gets through."""

    name: str
    app: Flask
    registry: CollectorRegistry
    #: Calls of the auth decorator's wrapper (one per request that ran it).
    calls: list[str] = field(default_factory=list)
    #: ``authorise(client) -> headers``: makes *client* an authorised one.
    authorise: Callable[[FlaskClient], dict[str, str]] = lambda _: {}
    #: ``check(reply)``: *reply* is this extension's own refusal.
    refused: Callable[[Reply], None] = lambda _: None
    healthy: list[bool] = field(default_factory=lambda: [True])

    def get(self, client: FlaskClient, path: str, **headers: str) -> Reply:
        response = client.get(path, headers=headers)
        try:
            body = response.get_data()
        finally:
            response.close()
        return Reply(response.status_code, dict(response.headers), body)


def counted(decorator: Callable[[View], View], calls: list[str]) -> Callable[[View], View]:
    """*decorator*, counting each time its wrapper runs."""

    def wrap(view: View) -> View:
        inner = decorator(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append("call")
            return inner(*args, **kwargs)

        return wrapper

    return wrap


def _finish(host: Host, decorator: Callable[[View], View], config: dict[str, Any]) -> Host:
    metrics = FlaskMetrics(registry=host.registry, auth=counted(decorator, host.calls))

    # Results not reused: the tests flip the database between probes.
    @metrics.health_check("database", cache_seconds=0, failure_cache_seconds=0)
    def database() -> bool:
        return host.healthy[0]

    host.app.config.update(config)
    metrics.init_app(host.app)
    return host


def jwt_host(config: dict[str, Any]) -> Host:
    app = Flask("jwt_host")
    app.config["JWT_SECRET_KEY"] = JWT_KEY
    JWTManager(app)
    host = Host("jwt", app, CollectorRegistry())

    def authorise(_: FlaskClient) -> dict[str, str]:
        with app.app_context():
            token = create_access_token(identity="alice")
        return {"Authorization": f"Bearer {token}"}

    def refused(reply: Reply) -> None:
        # flask-jwt-extended's own handler: 401 and its JSON.
        assert reply.status == 401
        assert reply.json() == {"msg": "Missing Authorization Header"}

    host.authorise, host.refused = authorise, refused
    return _finish(host, jwt_required(), config)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def _login_app(name: str, login_view: str | None) -> tuple[Flask, LoginManager]:
    app = Flask(name)
    app.config["SECRET_KEY"] = "session-key-for-tests"
    manager = LoginManager(app)
    manager.login_view = login_view  # type: ignore[assignment]
    manager.login_message = None  # type: ignore[assignment]

    @manager.user_loader
    def load(user_id: str) -> User | None:
        return User(user_id) if user_id == "alice" else None

    @app.post("/login")
    def login() -> str:
        login_user(User("alice"))
        return "logged in"

    @app.get("/login")
    def login_form() -> str:
        return "log in here"

    return app, manager


def _login(client: FlaskClient) -> dict[str, str]:
    response = client.post("/login")
    response.close()
    assert response.status_code == 200
    return {}


def login_redirect_host(config: dict[str, Any]) -> Host:
    app, _ = _login_app("login_host", "login_form")
    host = Host("login-redirect", app, CollectorRegistry(), authorise=_login)

    def refused(reply: Reply) -> None:
        assert reply.status == 302
        assert reply.headers["Location"].startswith("/login?next=")

    host.refused = refused
    return _finish(host, login_required, config)


def login_abort_host(config: dict[str, Any]) -> Host:
    # No login view: Flask-Login raises abort(401), an HTTPException.
    app, _ = _login_app("login_abort_host", None)
    host = Host("login-abort", app, CollectorRegistry(), authorise=_login)

    def refused(reply: Reply) -> None:
        assert reply.status == 401
        assert b"Unauthorized" in reply.body

    host.refused = refused
    return _finish(host, login_required, config)


def httpauth_host(config: dict[str, Any]) -> Host:
    app = Flask("httpauth_host")
    auth = HTTPBasicAuth()

    @auth.verify_password
    def verify(username: str, password: str) -> str | None:
        return username if (username, password) == ("ops", "pa55word") else None

    host = Host("httpauth", app, CollectorRegistry())

    def authorise(_: FlaskClient) -> dict[str, str]:
        raw = base64.b64encode(b"ops:pa55word").decode()
        return {"Authorization": f"Basic {raw}"}

    def refused(reply: Reply) -> None:
        # Flask-HTTPAuth's own 401 response, with its challenge.
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Basic ")
        assert reply.body == b"Unauthorized Access"

    host.authorise, host.refused = authorise, refused
    return _finish(host, auth.login_required, config)


HOSTS = {
    "jwt": jwt_host,
    "login-redirect": login_redirect_host,
    "login-abort": login_abort_host,
    "httpauth": httpauth_host,
}


@pytest.fixture(params=list(HOSTS))
def make_host(request: pytest.FixtureRequest) -> Callable[..., Host]:
    return lambda **config: HOSTS[request.param](config)


def _no_internal_errors(registry: CollectorRegistry) -> None:
    for component in ("health", "readyz", "status_page"):
        value = registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": component}
        )
        assert value in (None, 0.0), component


def _families(reply: Reply) -> set[str]:
    assert reply.status == 200
    return {f.name for f in text_string_to_metric_families(reply.body.decode())}


def test_anonymous_probes_get_the_truthful_public_summary(make_host: Callable[..., Host]) -> None:
    host = make_host()
    client = host.app.test_client()
    health = host.get(client, "/api/health")
    assert health.status == 200
    assert set(health.json()) == SUMMARY
    assert health.json()["status"] == "healthy"
    assert host.calls == ["call"]
    ready = host.get(client, "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "pass"})
    assert host.get(client, "/livez").status == 200
    ietf = host.get(client, "/api/health", Accept="application/health+json")
    assert (ietf.status, ietf.json()["status"]) == (200, "pass")
    # A failing critical check: the public answers say so (503), still without details.
    host.healthy[0] = False
    health = host.get(client, "/api/health")
    assert (health.status, health.json()["status"]) == (503, "unhealthy")
    assert set(health.json()) == SUMMARY
    ready = host.get(client, "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "fail"})
    _no_internal_errors(host.registry)


def test_protected_data_is_refused_by_the_extensions_own_answer(
    make_host: Callable[..., Host],
) -> None:
    host = make_host()
    client = host.app.test_client()
    for path in ("/metrics", "/status", "/status?format=json"):
        host.calls.clear()
        reply = host.get(client, path)
        host.refused(reply)
        assert b"http_requests" not in reply.body
        assert b"recent_errors" not in reply.body
        assert host.calls == ["call"], path
    _no_internal_errors(host.registry)


def test_authorised_clients_see_everything(make_host: Callable[..., Host]) -> None:
    host = make_host()
    client = host.app.test_client()
    headers = host.authorise(client)
    assert "http_requests" in _families(host.get(client, "/metrics", **headers))
    full = host.get(client, "/api/health", **headers)
    assert full.status == 200
    assert full.json()["checks"]["database"]["status"] == "pass"
    assert "checks" in host.get(client, "/readyz", **headers).json()
    page = host.get(client, "/status", **headers)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    host.calls.clear()
    browser = host.get(client, "/api/health", Accept=BROWSER_ACCEPT, **headers)
    assert browser.headers["Content-Type"].startswith("text/html")
    assert host.calls == ["call"]


def test_a_browser_at_the_health_path_runs_the_decorator_once(
    make_host: Callable[..., Host],
) -> None:
    host = make_host()
    client = host.app.test_client()
    reply = host.get(client, "/api/health", Accept=BROWSER_ACCEPT)
    # Not allowed to see the page: the JSON summary, decided by one run of the decorator.
    assert reply.status == 200
    assert set(reply.json()) == SUMMARY
    assert host.calls == ["call"]


def test_health_all_is_refused_by_the_extension_but_liveness_is_not(
    make_host: Callable[..., Host],
) -> None:
    host = make_host(APPMETRICS_AUTH_HEALTH="all")
    client = host.app.test_client()
    for path in ("/api/health", "/readyz", "/status"):
        host.calls.clear()
        reply = host.get(client, path)
        host.refused(reply)
        assert b"unhealthy" not in reply.body
        assert host.calls == ["call"], path
    host.calls.clear()
    browser = host.get(client, "/api/health", Accept=BROWSER_ACCEPT)
    host.refused(browser)
    assert host.calls == ["call"]
    assert host.get(client, "/livez").status == 200
    headers = host.authorise(client)
    for path in ("/api/health", "/readyz", "/status"):
        assert host.get(client, path, **headers).status == 200, path
    _no_internal_errors(host.registry)


def test_jwt_with_a_static_scrape_token_refuses_with_our_challenge() -> None:
    token = "static-scrape-token-0123456789"
    host = jwt_host({"APPMETRICS_AUTH_TOKEN": token})
    client = host.app.test_client()
    assert _families(host.get(client, "/metrics", Authorization=f"Bearer {token}"))
    assert host.calls == []  # the token admitted the scraper: the decorator did not run
    # Not a JWT either: flask-jwt-extended raises a decode error, which is a refusal here.
    wrong = host.get(client, "/metrics", Authorization="Bearer not-a-jwt")
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert host.calls == ["call"]
    health = host.get(client, "/api/health", Authorization="Bearer not-a-jwt")
    assert (health.status, set(health.json())) == (200, SUMMARY)
    jwt_headers = host.authorise(client)
    assert _families(host.get(client, "/metrics", **jwt_headers))


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_a_public_probe_leaves_no_login_flash_in_the_session(accept: str) -> None:
    """Flask-Login's refusal flashes its login message into the session. On a public probe
    the client gets the summary, not that refusal, so the session is left as it was: no
    cookie. Where the refusal is the answer (the status page), the flash stays with it."""
    app, manager = _login_app("flash_host", "login_form")
    manager.login_message = "Please log in to access this page."
    FlaskMetrics(app, registry=CollectorRegistry(), auth=login_required)
    client = app.test_client()
    for path in ("/api/health", "/readyz"):
        probe = client.get(path, headers={"Accept": accept})
        assert probe.status_code == 200, path
        assert probe.json is not None
        assert probe.json["status"] in ("healthy", "pass")
        assert "Set-Cookie" not in probe.headers, path
    refused = client.get("/status")
    assert refused.status_code == 302
    assert "Set-Cookie" in refused.headers
    with client.session_transaction() as session:
        assert session["_flashes"] == [("message", "Please log in to access this page.")]
