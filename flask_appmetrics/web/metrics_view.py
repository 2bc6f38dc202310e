"""The ``/metrics`` blueprint.

Format negotiation, gzip and ``name[]`` filtering are prometheus_client's own
(``choose_encoder``, ``gzip_accepted``, ``restricted_registry``), so the page is exactly what
``prometheus_client.make_wsgi_app`` would serve, including OpenMetrics for scrapers that
ask for it (compressed faster: see :data:`GZIP_LEVEL`). In multiprocess mode the page is
rendered by :func:`~flask_appmetrics.metrics.multiprocess.setup.encode`, which keeps each
series' line between scrapes.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from prometheus_client.exposition import choose_encoder, gzip_accepted

from ..metrics.multiprocess.setup import encode

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from .guard import Guard

METRICS_BLUEPRINT = "appmetrics_metrics"
#: The app's worker compresses the page: level 1 costs it a tenth of the CPU of level 9
#: (prometheus_client's) for a page about a fifth larger (57 KB instead of 46 KB for a
#: 1 MB page of 11,000 series), and Prometheus asks for gzip on every scrape.
GZIP_LEVEL = 1


def metrics_blueprint(
    path: str, guard: Guard, scrape_registry: Callable[[], CollectorRegistry]
) -> Blueprint:
    """A blueprint serving ``GET`` *path*: the registry ``scrape_registry()`` returns, in
    the format the scraper asked for, to the requests *guard* lets through."""

    def metrics_view() -> Response:
        refused = guard.refusal("metrics")
        if refused is not None:
            return refused
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        registry = scrape_registry()
        names = request.args.getlist("name[]")
        body = encoder(registry.restricted_registry(names)) if names else encode(registry, encoder)
        response = Response(body, content_type=content_type)
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            response.set_data(gzip.compress(body, compresslevel=GZIP_LEVEL))
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Cache-Control"] = "no-store"
        response.vary.update(("Accept", "Accept-Encoding"))
        return response

    blueprint = Blueprint(METRICS_BLUEPRINT, __name__)
    blueprint.add_url_rule(path, "metrics", metrics_view, methods=["GET"])
    return blueprint
