"""``concurrent_users``: who counts as a user, the gauge, and the bounds."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.apps import AppFactory


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def users_of(app: Flask) -> int:
    value = app.test_client().get("/api/health").get_json()["concurrent_users"]
    assert isinstance(value, int)
    return value


def gauge(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("concurrent_users")


def login_app(app_factory: AppFactory, loaded: list[str] | None = None) -> Flask:
    app = app_factory({"SECRET_KEY": "test"})
    manager = LoginManager(app)

    @manager.user_loader
    def load(user_id: str) -> User:
        if loaded is not None:
            loaded.append(user_id)
        return User(user_id)

    @app.get("/login/<user_id>")
    def login(user_id: str) -> str:
        login_user(User(user_id))
        return "in"

    @app.get("/me")
    def me() -> str:
        return str(current_user.get_id())

    @app.get("/logout")
    def logout() -> str:
        logout_user()
        return "out"

    return app


def test_logged_in_users_count_once_whatever_their_clients(app_factory: AppFactory) -> None:
    app = login_app(app_factory)
    phone, laptop, other = app.test_client(), app.test_client(), app.test_client()
    phone.get("/login/ann")
    laptop.get("/login/ann")
    other.get("/login/bob")
    for client in (phone, laptop, other):
        assert client.get("/me").status_code == 200
    assert users_of(app) == 2


def test_logged_in_user_is_known_without_loading_it(app_factory: AppFactory) -> None:
    loaded: list[str] = []
    app = login_app(app_factory, loaded)
    client = app.test_client()
    client.get("/login/ann")
    for _ in range(3):
        client.get("/items/1")  # never touches current_user: the session's _user_id is used
    assert users_of(app) == 1
    assert loaded == []  # counting users cost no user_loader (database) call
    client.get("/me")
    assert loaded == ["ann"]


def test_looking_for_the_user_does_not_change_the_response(app_factory: AppFactory) -> None:
    # Reading the session through its own get() marks it accessed, and Flask then adds
    # "Vary: Cookie" to the response: the app's caching would change because we looked.
    bare = Flask("bare")
    bare.config["SECRET_KEY"] = "test"
    bare.add_url_rule("/items/<int:item_id>", "item", lambda item_id: {"id": item_id})
    app = app_factory({"SECRET_KEY": "test"})  # no Flask-Login: its own hooks read the session
    for target in (bare, app):
        client = target.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = "ann"
        response = client.get("/items/1")
        assert response.status_code == 200
        assert "Vary" not in response.headers, target.name
    assert users_of(app) == 1


def test_anonymous_clients_count_by_address_and_agent(app: Flask) -> None:
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        client.get("/items/1")
        client.get("/echo")
    agent = app.test_client()
    agent.get("/echo", headers={"User-Agent": "curl/8"})
    assert users_of(app) == 4


def test_api_clients_count_by_credentials(app: Flask) -> None:
    client = app.test_client()
    for token in ("a", "b", "a", "c"):
        client.get("/echo", headers={"Authorization": f"Bearer {token}"})
    assert users_of(app) == 3


def test_the_gauge_is_computed_at_scrape_time(app: Flask, registry: CollectorRegistry) -> None:
    assert gauge(registry) == 0.0
    client = app.test_client()
    client.get("/echo", headers={"Authorization": "Bearer a"})
    client.get("/echo", headers={"Authorization": "Bearer b"})
    assert gauge(registry) == 2.0
    assert users_of(app) == 2


def test_the_gauge_sums_the_apps_of_a_registry(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    first, second = app_factory(), app_factory()
    first.test_client().get("/echo", headers={"Authorization": "one"})
    second.test_client().get("/echo", headers={"Authorization": "two"})
    second.test_client().get("/echo", headers={"Authorization": "three"})
    assert (users_of(first), users_of(second)) == (1, 2)
    assert gauge(registry) == 3.0


def test_custom_identity(registry: CollectorRegistry) -> None:
    def tenant_user() -> str | None:
        return request.headers.get("X-User")

    metrics = FlaskMetrics(registry=registry, user_identity=tenant_user)
    app = Flask("custom")

    @app.get("/")
    def index() -> str:
        return "ok"

    metrics.init_app(app)
    client = app.test_client()
    for user in ("ann", "bob", "ann"):
        client.get("/", headers={"X-User": user})
    client.get("/")  # None: not counted
    assert users_of(app) == 2


def test_a_failing_identity_never_breaks_the_request(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str | None:
        raise KeyError("no tenant")

    metrics = FlaskMetrics(registry=registry, user_identity=broken)
    app = Flask("broken")

    @app.get("/")
    def index() -> str:
        return "ok"

    metrics.init_app(app)
    assert app.test_client().get("/").status_code == 200
    assert users_of(app) == 0
    internal = registry.get_sample_value(
        "flask_appmetrics_internal_errors_total", {"component": "user_identity"}
    )
    assert internal == 1.0
    assert "could not note the request's user" in caplog.text


def test_users_are_bounded_by_max_tracked(app_factory: AppFactory) -> None:
    app = app_factory({"APPMETRICS_USERS_MAX_TRACKED": 5})
    client = app.test_client()
    for i in range(100):
        client.get("/echo", headers={"Authorization": f"token-{i}"})
    assert users_of(app) == 5


def test_users_of_failing_requests_count_too(app_factory: AppFactory) -> None:
    app = app_factory()
    app.test_client().get("/boom", headers={"Authorization": "x"})
    assert users_of(app) == 1


@pytest.mark.parametrize("path", ["/api/health", "/livez", "/readyz", "/metrics"])
def test_probes_are_not_users(app: Flask, path: str, registry: CollectorRegistry) -> None:
    headers: dict[str, Any] = {"Authorization": "prober"}
    app.test_client().get(path, headers=headers)
    assert gauge(registry) == 0.0
