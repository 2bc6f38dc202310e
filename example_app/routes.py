"""The API blueprint: ``POST /api/generate``, ``/api/subtopics``, ``/api/explanations``,
``/api/explanations/stream``, ``/api/images``, and an index at ``/``.

Each takes a JSON body with a ``topic`` (and for explanations an optional ``subtopic``).
With ``EXAMPLE_SIMULATION`` on and the offline LLM, ``?fail=1`` makes the LLM call fail,
``?delay=0.5`` slows it down and ``?scenario=429`` (or ``safety``, ``max-tokens``, ``400``,
...) gets that answer from the API stand-in, so errors, latency, quota refusals, blocked
answers and the circuit breaker can be watched. Failures map to HTTP statuses an operator
can alert on: 400 bad input, 422 answer blocked, 429 quota (ours or Google's), 502 LLM
error, 503 breaker open.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .content import clean_topic
from .llm import MAX_SIMULATED_DELAY, SCENARIOS, ContentBlocked, GenerationError, Simulation
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
    scenario = request.args.get("scenario")
    return Simulation(
        fail=fail,
        delay=min(max(delay, 0.0), MAX_SIMULATED_DELAY),
        scenario=scenario if scenario in SCENARIOS else None,
    )


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


@api.errorhandler(ContentBlocked)
def _blocked(exc: ContentBlocked) -> Response:
    return _error(422, f"the model's answer was blocked: {exc}")


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
            "POST /api/explanations/stream": "the same, streamed as the model writes it",
            "POST /api/images": '{"topic": "..."}: an SVG illustration',
            "GET /metrics": "Prometheus metrics",
            "GET /api/health": "health (JSON; HTML status page in a browser)",
            "GET /status": "status page",
        },
        simulation="?fail=1, ?delay=<seconds> and ?scenario=<429|safety|...> on the POST "
        "endpoints (offline LLM)",
    )


@api.post("/api/generate")
def generate() -> Response | tuple[Response, int]:
    """Subtopics and an explanation of a topic: the service's main endpoint."""
    topic = clean_topic(_body().get("topic"))
    if topic is None:
        return _error(400, "give a 'topic' string of 1 to 200 characters")
    service, simulation = _service(), _simulation()
    subtopics = service.subtopics(topic, simulation=simulation)
    explanation = service.explanation(topic, None, simulation=simulation)
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
    result = _service().subtopics(topic, simulation=_simulation())
    return jsonify(topic=topic, subtopics=result.value, cached=result.cached)


def _topic_and_subtopic() -> tuple[str, str | None] | None:
    body = _body()
    topic = clean_topic(body.get("topic"))
    subtopic = clean_topic(body.get("subtopic")) if body.get("subtopic") is not None else None
    if topic is None or (body.get("subtopic") is not None and subtopic is None):
        return None
    return topic, subtopic


@api.post("/api/explanations")
def explanations() -> Response:
    parsed = _topic_and_subtopic()
    if parsed is None:
        return _error(400, "give a 'topic' (and optionally a 'subtopic') of 1 to 200 characters")
    topic, subtopic = parsed
    result = _service().explanation(topic, subtopic, simulation=_simulation())
    return jsonify(topic=topic, subtopic=subtopic, explanation=result.value, cached=result.cached)


@api.post("/api/explanations/stream")
def explanation_stream() -> Response:
    """The explanation as plain text, streamed while the model writes it."""
    parsed = _topic_and_subtopic()
    if parsed is None:
        return _error(400, "give a 'topic' (and optionally a 'subtopic') of 1 to 200 characters")
    topic, subtopic = parsed
    pieces = _service().explanation_stream(topic, subtopic, simulation=_simulation())
    return Response(pieces, mimetype="text/plain")


@api.post("/api/images")
def images() -> Response:
    topic = clean_topic(_body().get("topic"))
    if topic is None:
        return _error(400, "give a 'topic' string of 1 to 200 characters")
    result = _service().illustration(topic, simulation=_simulation())
    return jsonify(topic=topic, cached=result.cached, **result.value)
