"""A small runnable app showing flask-appmetrics (replaced by the seed's backend later)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_appmetrics import FlaskMetrics

metrics = FlaskMetrics()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the example backend; *config* overrides ``app.config``."""
    app = Flask(__name__)
    app.config.update(config or {})
    metrics.init_app(app)

    @app.get("/")
    def index() -> dict[str, str]:
        return {"hello": "world"}

    return app
