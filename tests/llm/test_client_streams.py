"""Streams of an instrumented client (``generate_content_stream``, sync and async), over real
SSE from the Gemini API stand-in: timed to the last chunk, ``success`` only when exhausted,
``error`` when google-genai raises mid-stream, ``cancelled`` when abandoned; time to first
chunk and output tokens per second."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from flask import Flask, Response
from prometheus_client import CollectorRegistry

from tests.support.gemini import FakeGemini, scenario
from tests.support.wsgi import serve

genai_errors = pytest.importorskip("google.genai.errors")

MODEL = "gemini-2.5-flash"
LABELS = {"endpoint": "<background>", "model": MODEL}
DELAY = 0.05  # seconds before each chunk: three chunks, at least 0.15 s per stream


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def calls(registry: CollectorRegistry, status: str, **labels: str) -> float:
    return value(registry, "gemini_api_calls_total", **{**LABELS, **labels}, status=status)


def delayed(name: str = "normal", delay: float = DELAY) -> Any:
    from google.genai import types

    headers = {"X-Fake-Gemini-Delay": str(delay)}
    if name != "normal":
        headers["X-Fake-Gemini-Scenario"] = name
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers))


def test_an_exhausted_stream_is_one_success_timed_to_its_last_chunk(
    app: Flask, registry: CollectorRegistry, genai_client: Any, gemini: FakeGemini
) -> None:
    chunks = list(
        genai_client.models.generate_content_stream(model=MODEL, contents="hi", config=delayed())
    )
    assert len(chunks) == 3
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert calls(registry, "success") == 1
    duration = value(registry, "gemini_api_duration_seconds_sum", **LABELS)
    first = value(registry, "gemini_api_time_to_first_chunk_seconds_sum", **LABELS)
    assert DELAY <= first < duration
    assert duration >= 3 * DELAY
    # Tokens from the last chunk (the totals), output speed over first to last chunk.
    usage = chunks[-1].usage_metadata
    output = value(registry, "gemini_api_token_usage_total", **LABELS, token_type="output")
    assert output == usage.candidates_token_count
    speed = value(registry, "gemini_api_output_tokens_per_second_sum", **LABELS)
    assert speed == pytest.approx(output / (duration - first), rel=1e-6)
    assert (
        value(registry, "gemini_api_finish_reasons_total", model=MODEL, finish_reason="STOP") == 1
    )
    otel = {
        "gen_ai_operation_name": "generate_content",
        "gen_ai_provider_name": "gcp.gemini",
        "gen_ai_request_model": MODEL,
        "gen_ai_response_model": f"{MODEL}-001",
    }
    ttfc = value(registry, "gen_ai_client_operation_time_to_first_chunk_seconds_sum", **otel)
    assert ttfc == first


def test_the_consumers_own_time_after_the_last_chunk_is_not_the_calls(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    stream = genai_client.models.generate_content_stream(model=MODEL, contents="hi")
    received = [next(stream) for _ in range(3)]  # the last chunk: the call is over
    import time

    time.sleep(0.2)  # the consumer works on the answer before asking for more
    assert list(stream) == []
    assert received[-1].candidates[0].finish_reason is not None
    assert calls(registry, "success") == 1
    assert value(registry, "gemini_api_duration_seconds_sum", **LABELS) < 0.2


def test_a_stream_abandoned_early_is_cancelled(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    stream = genai_client.models.generate_content_stream(model=MODEL, contents="hi")
    next(stream)
    stream.close()
    assert calls(registry, "cancelled") == 1
    # Dropped without close(): collected, then recorded.
    for _chunk in genai_client.models.generate_content_stream(model=MODEL, contents="hi"):
        break
    gc.collect()
    assert calls(registry, "cancelled") == 2
    assert calls(registry, "success") == 0
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **LABELS) == 2
    # Not complete: no output speed.
    assert value(registry, "gemini_api_output_tokens_per_second_count", **LABELS) == 0


def test_a_stream_that_never_started_records_nothing(
    app: Flask, registry: CollectorRegistry, genai_client: Any, gemini: FakeGemini
) -> None:
    before = gemini.count("streamGenerateContent")
    stream = genai_client.models.generate_content_stream(model=MODEL, contents="hi")
    del stream
    gc.collect()
    assert gemini.count("streamGenerateContent") == before  # no request was made
    assert calls(registry, "cancelled") + calls(registry, "success") == 0


def test_a_stream_failing_midway_is_an_error_of_its_type(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    stream = genai_client.models.generate_content_stream(
        model=MODEL, contents="hi", config=scenario("stream-error")
    )
    received = [next(stream), next(stream)]
    with pytest.raises(genai_errors.ServerError):
        next(stream)
    assert all(chunk.text for chunk in received)
    assert calls(registry, "error") == 1
    assert value(registry, "gemini_api_errors_total", **LABELS, error_type="INTERNAL") == 1
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **LABELS) == 1


def test_a_stream_refused_at_once(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    with pytest.raises(genai_errors.ClientError):
        list(
            genai_client.models.generate_content_stream(
                model=MODEL, contents="x", config=scenario("429")
            )
        )
    assert (
        value(registry, "gemini_api_errors_total", **LABELS, error_type="RESOURCE_EXHAUSTED") == 1
    )
    assert value(registry, "quota_refused_total", model=MODEL, limit="rpm") == 1
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **LABELS) == 0


def test_a_streamed_safety_block(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    chunks = list(
        genai_client.models.generate_content_stream(
            model=MODEL, contents="x", config=scenario("safety")
        )
    )
    assert chunks[0].text is None
    assert calls(registry, "success") == 1
    assert (
        value(registry, "gemini_api_finish_reasons_total", model=MODEL, finish_reason="SAFETY") == 1
    )


def test_a_stream_read_after_its_request_keeps_the_requests_endpoint(
    app: Flask, registry: CollectorRegistry, genai_client: Any
) -> None:
    """A streamed response: the view returns, the server reads the stream after the view
    (and its request context) is gone; the call still belongs to the route."""

    @app.post("/api/stream")
    def llm_stream() -> Response:
        chunks = genai_client.models.generate_content_stream(model=MODEL, contents="hi")
        return Response((chunk.text or "" for chunk in chunks), mimetype="text/plain")

    served = serve(app, "/api/stream", method="POST")
    assert served.status == 200
    assert served.body
    assert served.closed
    assert calls(registry, "success", endpoint="/api/stream") == 1


def test_async_streams(
    app: Flask, registry: CollectorRegistry, gemini: FakeGemini, make_client: Any
) -> None:
    from flask_appmetrics.integrations.genai import instrument_client

    genai_client = instrument_client(make_client())

    async def main() -> None:
        stream = await genai_client.aio.models.generate_content_stream(
            model=MODEL, contents="hi", config=delayed()
        )
        assert len([chunk async for chunk in stream]) == 3
        stream = await genai_client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        await stream.__anext__()
        await stream.aclose()
        with pytest.raises(genai_errors.ServerError):
            async for _ in await genai_client.aio.models.generate_content_stream(
                model=MODEL, contents="hi", config=scenario("stream-error")
            ):
                pass
        await genai_client.aio.aclose()

    with app.app_context():
        asyncio.run(main())
    assert calls(registry, "success") == 1
    assert calls(registry, "cancelled") == 1
    assert calls(registry, "error") == 1
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_count", **LABELS) == 3
    assert value(registry, "gemini_api_time_to_first_chunk_seconds_sum", **LABELS) >= DELAY
    assert value(registry, "gemini_api_output_tokens_per_second_count", **LABELS) == 1
