"""The ``/metrics`` blueprint.

Format negotiation, gzip and ``name[]`` filtering are prometheus_client's own
(``choose_encoder``, ``gzip_accepted``, ``restricted_registry``), so the page is exactly what
``prometheus_client.make_wsgi_app`` would serve, including OpenMetrics for scrapers that
ask for it.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from prometheus_client.exposition import choose_encoder, gzip_accepted

from .guard import metrics_denied

if TYPE_CHECKING:
    from ..app_state import AppState

METRICS_BLUEPRINT = "appmetrics_metrics"


def _state() -> AppState:
    state: AppState = current_app.extensions["appmetrics"]
    return state


def metrics_view() -> Response:
    """Serve the registry in the format the scraper asked for."""
    denied = metrics_denied()
    if denied is not None:
        return denied
    state = _state()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    registry = state.scrape_registry()
    names = request.args.getlist("name[]")
    body = encoder(registry.restricted_registry(names) if names else registry)
    response = Response(body, content_type=content_type)
    if gzip_accepted(request.headers.get("Accept-Encoding", "")):
        response.set_data(gzip.compress(body))
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Cache-Control"] = "no-store"
    response.vary.update(("Accept", "Accept-Encoding"))
    return response


def metrics_blueprint(path: str) -> Blueprint:
    """Return a blueprint serving :func:`metrics_view` at *path* (``GET`` only)."""
    blueprint = Blueprint(METRICS_BLUEPRINT, __name__)
    blueprint.add_url_rule(path, "metrics", metrics_view, methods=["GET"])
    return blueprint
