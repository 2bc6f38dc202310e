"""An internal back office whose staff log in; ``/metrics`` is for staff only.

``create_app(kind="login")`` guards it with Flask-Login's ``login_required`` (anonymous
staff are redirected to the login page), ``kind="httpauth"`` with Flask-HTTPAuth's
``HTTPBasicAuth.login_required`` (a 401 with its own challenge and body).
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Flask, redirect, request, url_for
from flask_httpauth import HTTPBasicAuth
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from prometheus_client import CollectorRegistry
from werkzeug.wrappers import Response

from flask_appmetrics import FlaskMetrics
from tests.support.hosts._counting import counted

STAFF = {"ada": "lovelace-1815", "alan": "turing-1912"}

pages = Blueprint("pages", __name__)


class Staff(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


@pages.get("/")
def dashboard() -> str:
    return "back office"


@pages.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    name = request.form.get("name", "")
    if request.method == "POST" and STAFF.get(name) == request.form.get("password"):
        login_user(Staff(name))
        return redirect(request.args.get("next") or url_for("pages.dashboard"))
    return "<form method=post><input name=name><input name=password></form>"


@pages.get("/orders")
@login_required
def orders() -> dict[str, Any]:
    return {"orders": [], "staff": current_user.get_id()}


def create_app(
    kind: Literal["login", "httpauth"],
    config: dict[str, Any] | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "back-office-secret-key"
    app.config.update(config or {})
    manager = LoginManager(app)
    manager.login_view = "pages.login"

    @manager.user_loader
    def load(user_id: str) -> Staff | None:
        return Staff(user_id) if user_id in STAFF else None

    if kind == "login":
        guard = login_required
    else:
        basic = HTTPBasicAuth(realm="back office")

        @basic.verify_password
        def verify(name: str, password: str) -> str | None:
            return name if STAFF.get(name) == password else None

        guard = basic.login_required
        app.extensions["host_basic_auth"] = basic
    FlaskMetrics(registry=registry, auth=counted(guard)).init_app(app)
    app.register_blueprint(pages)
    return app
