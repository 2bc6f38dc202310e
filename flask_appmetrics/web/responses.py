"""Responses shared by the views: ``no-store`` with ``Vary``, health JSON in the format the
client asked for, and the 503 that answers a failure of our own code."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response, request

from ..errors import count_internal_error as count_errors

logger = logging.getLogger(__name__)

#: The IETF draft's media type (draft-inadarei-api-health-check).
HEALTH_JSON = "application/health+json"

#: Counts an internal error of one component (``MetricSet.count_internal_error``).
ErrorCounter = Callable[[str], None]


def wants_health_json() -> bool:
    """Whether the client prefers ``application/health+json`` to plain JSON."""
    best = request.accept_mimetypes.best_match(["application/json", HEALTH_JSON])
    return best == HEALTH_JSON


def no_store(response: Response) -> Response:
    """*response*, never cached, varying with ``Accept`` (every view negotiates its format)."""
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept")
    return response


def health_json(body: dict[str, Any], status: int) -> Response:
    """*body* as JSON, typed ``application/health+json`` when the client asked for it."""
    mimetype = HEALTH_JSON if wants_health_json() else "application/json"
    return no_store(Response(json.dumps(body), status=status, mimetype=mimetype))


def failed(component: str, count_internal_error: ErrorCounter) -> Response:
    """503 for a failure of our own code while serving *component*: logged and counted as
    an internal error (call it from an ``except`` block). A load balancer reads it as
    "not ready", never as a crash of the app (500)."""
    logger.exception("flask-appmetrics failed to evaluate %s", component)
    count_errors(component, count_internal_error)
    body = {"status": "fail" if wants_health_json() else "unhealthy", "error": "internal"}
    return health_json(body, 503)
