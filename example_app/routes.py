"""The API blueprint: ``POST /api/generate``, ``/api/subtopics``, ``/api/explanations``,
``/api/images``, and an index at ``/``.

Each takes a JSON body with a ``topic`` (and for explanations an optional ``subtopic``).
With ``EXAMPLE_SIMULATION`` on, ``?fail=1`` makes the LLM call fail and ``?delay=0.5``
slows it down, so errors, latency and the circuit breaker can be watched. Failures map to
HTTP statuses an operator can alert on: 400 bad input, 429 quota, 502 LLM error, 503
breaker open.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .content import clean_topic
from .llm import MAX_SIMULATED_DELAY, GenerationError, Simulation
from .service import ContentService, QuotaExceeded, ServiceUnavailable

api = Blueprint("api", __name__)

SERVICE_KEY = "example_app"


def _service() -> ContentService:
    service: ContentService = current_app.extensions[SERVICE_KEY]
    return service


def _simulation() -> Simulation:
    if not current_app.config["EXAMPLE_SIMULATION"]:
        return Simulation()
    fail = request.args.get("fail", "0") not in ("", "0", "false")
    try:
        delay = float(request.args.get("delay", "0"))
    except ValueError:
        delay = 0.0
    if not math.isfinite(delay):
        delay = 0.0
    return Simulation(fail=fail, delay=min(max(delay, 0.0), MAX_SIMULATED_DELAY))


def _error(status: int, message: str, retry_after: float | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@api.errorhandler(QuotaExceeded)
def _quota_exceeded(exc: QuotaExceeded) -> Response:
    return _error(429, str(exc), exc.retry_after)


@api.errorhandler(ServiceUnavailable)
def _unavailable(exc: ServiceUnavailable) -> Response:
    return _error(503, str(exc), exc.retry_after)


@api.errorhandler(GenerationError)
def _generation_failed(exc: GenerationError) -> Response:
    return _error(502, f"content generation failed: {exc}")


@api.get("/")
def index() -> Response:
    """What this backend serves (handy in a browser)."""
    return jsonify(
        service="flask-appmetrics example backend",
        llm=type(_service().generator).__name__,
        model=_service().generator.model,
        endpoints={
            "POST /api/generate": '{"topic": "..."}: subtopics and an explanation',
            "POST /api/subtopics": '{"topic": "..."}',
            "POST /api/explanations": '{"topic": "...", "subtopic": "..."}',
            "POST /api/images": '{"topic": "..."}: an SVG illustration',
            "GET /metrics": "Prometheus metrics",
            "GET /api/health": "health (JSON; HTML status page in a browser)",
            "GET /status": "status page",
        },
        simulation="?fail=1 and ?delay=<seconds> on the POST endpoints",
    )


@api.post("/api/generate")
def generate() -> Response | tuple[Response, int]:
    """Subtopics and an explanation of a topic: the service's main endpoint."""
    topic = clean_topic(_body().get("topic"))
    if topic is None:
        return _error(400, "give a 'topic' string of 1 to 200 characters")
    service, simulation = _service(), _simulation()
    subtopics = service.subtopics(topic, endpoint="/api/generate", simulation=simulation)
    explanation = service.explanation(topic, None, endpoint="/api/generate", simulation=simulation)
    return jsonify(
        topic=topic,
        subtopics=subtopics.value,
        explanation=explanation.value,
        cached=subtopics.cached and explanation.cached,
    )


@api.post("/api/subtopics")
def subtopics() -> Response:
    topic = clean_topic(_body().get("topic"))
    if topic is None:
        return _error(400, "give a 'topic' string of 1 to 200 characters")
    result = _service().subtopics(topic, endpoint="/api/subtopics", simulation=_simulation())
    return jsonify(topic=topic, subtopics=result.value, cached=result.cached)


@api.post("/api/explanations")
def explanations() -> Response:
    body = _body()
    topic = clean_topic(body.get("topic"))
    subtopic = clean_topic(body.get("subtopic")) if body.get("subtopic") is not None else None
    if topic is None or (body.get("subtopic") is not None and subtopic is None):
        return _error(400, "give a 'topic' (and optionally a 'subtopic') of 1 to 200 characters")
    result = _service().explanation(
        topic, subtopic, endpoint="/api/explanations", simulation=_simulation()
    )
    return jsonify(topic=topic, subtopic=subtopic, explanation=result.value, cached=result.cached)


@api.post("/api/images")
def images() -> Response:
    topic = clean_topic(_body().get("topic"))
    if topic is None:
        return _error(400, "give a 'topic' string of 1 to 200 characters")
    result = _service().illustration(topic, endpoint="/api/images", simulation=_simulation())
    return jsonify(topic=topic, cached=result.cached, **result.value)
