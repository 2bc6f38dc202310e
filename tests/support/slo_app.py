"""The app the objectives' command and rule tests use: two objectives on one view
(availability and latency, declared with the decorator), one over the whole app
(declared in config), and a view of another method on the same rule.

``flask --app tests.support.slo_app:create_app appmetrics ...`` runs it from the repository's
root; ``APPMETRICS_*`` overrides come in as keyword arguments or ``SLO_APP_*`` variables.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics

TOKEN = "slo-app-token-long-enough"


def create_app(**config: Any) -> Flask:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("slo_app")
    app.config["APPMETRICS_AUTH_TOKEN"] = TOKEN
    app.config["APPMETRICS_SLOS"] = [{"name": "shop", "availability": 0.99}]
    if os.environ.get("SLO_APP_BAD_BUCKETS"):
        app.config["APPMETRICS_BUCKETS"] = (0.1, 1.0)  # 250 ms is not a boundary any more
    if os.environ.get("SLO_APP_UNKNOWN_ENDPOINT"):
        app.config["APPMETRICS_SLOS"] = [{"endpoints": ["nope"], "availability": 0.99}]
    app.config.update(config)
    metrics.init_app(app)

    @app.get("/search")
    @metrics.slo(availability=0.999, latency=("250ms", 0.99))
    def search() -> str:
        return "results"

    @app.post("/search")
    def index_document() -> str:
        return "indexed"

    @app.get("/fail")
    def fail() -> str:
        abort(500)

    return app
