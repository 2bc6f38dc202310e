"""A JSON API with token auth (flask-jwt-extended); ``/metrics`` needs a token as well.

``FlaskMetrics(auth=jwt_required())``: the decorator raises flask-jwt-extended's own
exceptions (``NoAuthorizationError``...), which its error handlers turn into 401 JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, request
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.hosts._counting import counted

api = Blueprint("api", __name__, url_prefix="/api/v1")

CLIENTS = {"mobile": "mobile-secret", "prometheus": "scraper-secret"}


@api.post("/tokens")
def tokens() -> tuple[dict[str, Any], int]:
    body = request.get_json(silent=True) or {}
    client = str(body.get("client", ""))
    if CLIENTS.get(client) != body.get("secret"):
        return {"msg": "bad credentials"}, 401
    return {"access_token": create_access_token(identity=client)}, 201


@api.get("/me")
@jwt_required()
def me() -> dict[str, Any]:
    return {"client": get_jwt_identity()}


def _database_answers() -> bool:
    # Stands for a SELECT 1; DATABASE_UP lets a test take the database down.
    return bool(current_app.config.get("DATABASE_UP", True))


def create_app(
    config: dict[str, Any] | None = None, *, registry: CollectorRegistry | None = None
) -> Flask:
    app = Flask(__name__)
    app.config["JWT_SECRET_KEY"] = "tokens-api-signing-key-of-32-bytes!"
    app.config.update(config or {})
    JWTManager(app)
    app.register_blueprint(api)
    metrics = FlaskMetrics(registry=registry, auth=counted(jwt_required()))
    metrics.add_health_check("database", _database_answers)
    metrics.init_app(app)
    return app
