"""A writing assistant calling an LLM, with answers cached by Flask-Caching.

The model client is a stand-in with the shape of google-genai's (a ``usage_metadata`` on
each response): the app code around it is what a real app writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request, stream_with_context
from flask_caching import Cache
from google.genai import types
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, record_gemini_usage, track_gemini_call
from flask_appmetrics.integrations.caching import instrument_cache

MODEL = "gemini-1.5-flash"

cache = Cache()
bp = Blueprint("assistant", __name__, url_prefix="/api")


class ModelDown(Exception):
    """The model provider refused the call."""


def _response(text: str) -> types.GenerateContentResponse:
    return types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(parts=[types.Part(text=text)]))],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=len(text.split()),
            candidates_token_count=7,
            total_token_count=len(text.split()) + 7,
        ),
    )


@track_gemini_call("/api/generate", MODEL)
def generate(prompt: str) -> types.GenerateContentResponse:
    if "fail" in prompt:
        raise ModelDown("quota exceeded")
    return _response(f"about {prompt}")


@track_gemini_call("/api/stream", MODEL)
def generate_stream(prompt: str, delay: float) -> Iterator[str]:
    """Chunks as ``generate_content_stream`` yields them."""
    for word in ("one", "two", "three"):
        time.sleep(delay)
        if "fail" in prompt and word == "three":
            raise ModelDown("stream broken")
        yield word + " "


@bp.get("/generate")
@cache.cached(query_string=True)
def generate_view() -> dict[str, Any]:
    prompt = request.args.get("prompt", "")
    try:
        answer = generate(prompt)
    except ModelDown:
        return {"error": "model unavailable"}, 503  # type: ignore[return-value]
    return {"text": answer.text}


@bp.get("/summarise")
def summarise() -> dict[str, Any]:
    # Timed by hand, as code calling a client without a decorator does.
    started = time.perf_counter()
    answer = _response("summary of " + request.args.get("text", ""))
    record_gemini_usage(
        "/api/summarise", MODEL, duration=time.perf_counter() - started, usage_metadata=answer
    )
    return {"text": answer.text}


@bp.get("/stream")
def stream() -> Response:
    prompt = request.args.get("prompt", "")
    delay = float(request.args.get("delay", "0"))

    def body() -> Iterator[str]:
        try:
            yield from generate_stream(prompt, delay)
        except ModelDown:
            yield "[stream interrupted]"

    return Response(stream_with_context(body()), mimetype="text/plain")


def create_app(
    config: dict[str, Any] | None = None, *, registry: CollectorRegistry | None = None
) -> Flask:
    app = Flask(__name__)
    app.config.update({"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300})
    app.config["APPMETRICS_GEMINI_ENDPOINTS"] = ("/api/generate", "/api/summarise", "/api/stream")
    app.config.update(config or {})
    FlaskMetrics(registry=registry).init_app(app)
    cache.init_app(app)
    instrument_cache(cache, app)
    app.register_blueprint(bp)
    return app
