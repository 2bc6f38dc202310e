"""``track_gemini_call`` on streams: generator and async-generator functions.

A stream is one call timed over its whole iteration: ``success`` once exhausted, ``error``
if it raises, ``cancelled`` if its consumer closes it early (``close()``/``aclose()``, a
``break`` followed by garbage collection, the event loop shutting down). Real generators,
real sleeps, real google-genai response objects for the token counts.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from flask import Flask, Response, request, stream_with_context
from google.genai import types
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app

from flask_appmetrics import FlaskMetrics, track_gemini_call
from tests.support.apps import AppFactory

GEN = {"endpoint": "/api/generate", "model": "gemini-1.5-flash"}
STEP = 0.02  # three steps: at least 0.06 s of iteration per stream


def calls(registry: CollectorRegistry, status: str) -> float:
    return registry.get_sample_value("gemini_api_calls_total", {**GEN, "status": status}) or 0.0


def duration(registry: CollectorRegistry) -> tuple[float, float]:
    """(count, sum) of ``gemini_api_duration_seconds``."""
    count = registry.get_sample_value("gemini_api_duration_seconds_count", GEN) or 0.0
    total = registry.get_sample_value("gemini_api_duration_seconds_sum", GEN) or 0.0
    return count, total


def chunk(text: str, total_tokens: int | None = None) -> types.GenerateContentResponse:
    """A streamed chunk as google-genai yields it; the last one carries the usage."""
    usage = (
        types.GenerateContentResponseUsageMetadata(
            prompt_token_count=10,
            candidates_token_count=total_tokens - 10,
            total_token_count=total_tokens,
        )
        if total_tokens is not None
        else None
    )
    return types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(parts=[types.Part(text=text)]))],
        usage_metadata=usage,
    )


class Upstream(RuntimeError):
    pass


# -- generators ----------------------------------------------------------------------------


def test_an_exhausted_stream_is_one_success_timed_over_its_iteration(
    app: Flask, registry: CollectorRegistry
) -> None:
    @track_gemini_call(**GEN)
    def stream(prompt: str) -> Iterator[types.GenerateContentResponse]:
        for index in range(3):
            time.sleep(STEP)
            yield chunk(f"{prompt}{index}", total_tokens=42 if index == 2 else None)

    with app.app_context():
        started = time.perf_counter()
        texts = [c.text for c in stream("x")]
        elapsed = time.perf_counter() - started
    assert texts == ["x0", "x1", "x2"]
    assert calls(registry, "success") == 1.0
    assert calls(registry, "error") == 0.0
    count, total = duration(registry)
    assert count == 1.0
    assert 3 * STEP <= total <= elapsed
    # The last chunk's usage: the stream's totals.
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 42.0
    assert stream.__name__ == "stream"
    # Time to the first chunk (one step), and output speed over the other two.
    first = registry.get_sample_value("gemini_api_time_to_first_chunk_seconds_sum", GEN) or 0.0
    assert STEP <= first < total
    speed = registry.get_sample_value("gemini_api_output_tokens_per_second_sum", GEN)
    assert speed == pytest.approx(32 / (total - first))


def test_a_stream_that_raises_is_an_error_timed_to_the_failure(
    app: Flask, registry: CollectorRegistry
) -> None:
    @track_gemini_call(**GEN)
    def stream() -> Iterator[str]:
        yield "first"
        time.sleep(3 * STEP)
        raise Upstream("stream broke")

    received: list[str] = []
    with app.app_context(), pytest.raises(Upstream):
        received.extend(stream())
    assert received == ["first"]
    assert calls(registry, "error") == 1.0
    assert calls(registry, "success") == 0.0
    assert duration(registry)[1] >= 3 * STEP


def test_a_stream_closed_early_is_cancelled_and_its_own_cleanup_runs(
    app: Flask, registry: CollectorRegistry
) -> None:
    cleaned = []

    @track_gemini_call(**GEN)
    def stream() -> Iterator[int]:
        try:
            for index in range(10):
                time.sleep(STEP)
                yield index
        finally:
            cleaned.append(True)

    with app.app_context():
        items = stream()
        assert [next(items) for _ in range(3)] == [0, 1, 2]
        items.close()
    assert cleaned == [True]
    assert calls(registry, "cancelled") == 1.0
    assert calls(registry, "success") == calls(registry, "error") == 0.0
    assert duration(registry)[1] >= 3 * STEP


def test_a_dropped_stream_is_cancelled_in_the_app_it_started_in(
    metrics: FlaskMetrics, registry: CollectorRegistry
) -> None:
    app = Flask("streaming_app")
    metrics.init_app(app)
    # Initialised later, so the helpers' fallback outside a context: not where it belongs.
    other_registry = CollectorRegistry()
    FlaskMetrics(Flask("later_app"), registry=other_registry)

    @track_gemini_call(**GEN)
    def stream() -> Iterator[int]:
        yield from range(10)

    with app.app_context():
        items = stream()
        for item in items:
            if item == 2:
                break  # a consumer that stops reading, and drops the stream later
    del items
    gc.collect()
    assert calls(registry, "cancelled") == 1.0
    assert calls(other_registry, "cancelled") == 0.0


def test_a_stream_never_iterated_made_no_call(app: Flask, registry: CollectorRegistry) -> None:
    @track_gemini_call(**GEN)
    def stream() -> Iterator[int]:
        yield 1

    with app.app_context():
        stream()
        gc.collect()
    assert duration(registry)[0] == 0.0


def test_send_and_throw_reach_the_wrapped_generator(
    app: Flask, registry: CollectorRegistry
) -> None:
    @track_gemini_call(**GEN)
    def echo() -> Iterator[str]:
        received = yield "ready"
        while received != "stop":
            try:
                received = yield f"got {received}"
            except KeyError:
                received = yield "recovered"
        return

    with app.app_context():
        conversation = echo()
        assert next(conversation) == "ready"
        assert conversation.send("a") == "got a"
        assert conversation.throw(KeyError("k")) == "recovered"
        with pytest.raises(StopIteration):
            conversation.send("stop")
    assert calls(registry, "success") == 1.0


def test_the_context_manager_in_a_generator_closed_early_is_cancelled(
    app: Flask, registry: CollectorRegistry
) -> None:
    def stream() -> Iterator[int]:
        with track_gemini_call(**GEN):
            for index in range(10):
                time.sleep(STEP)
                yield index

    with app.app_context():
        items = stream()
        next(items), next(items), next(items)
        items.close()
    assert calls(registry, "cancelled") == 1.0
    assert duration(registry)[1] >= 3 * STEP


# -- async generators ------------------------------------------------------------------------


def test_async_streams_success_error_and_cancelled(app: Flask, registry: CollectorRegistry) -> None:
    closed = []

    @track_gemini_call(**GEN)
    async def stream(fail: bool = False) -> AsyncIterator[types.GenerateContentResponse]:
        try:
            for index in range(3):
                await asyncio.sleep(STEP)
                yield chunk(str(index), total_tokens=20 if index == 2 else None)
            if fail:
                raise Upstream("stream broke after the last chunk")
        finally:
            closed.append(True)

    async def main() -> None:
        assert [c.text async for c in stream()] == ["0", "1", "2"]
        with pytest.raises(Upstream):
            async for _ in stream(fail=True):
                pass
        early = stream()
        assert (await early.__anext__()).text == "0"
        await asyncio.sleep(2 * STEP)  # the consumer is slow: the call lasts
        await early.aclose()

    with app.app_context():
        asyncio.run(main())
    assert closed == [True, True, True]
    assert calls(registry, "success") == 1.0
    assert calls(registry, "error") == 1.0
    assert calls(registry, "cancelled") == 1.0
    count, total = duration(registry)
    assert count == 3.0
    assert total >= 3 * STEP + 3 * STEP + 3 * STEP
    # Only the exhausted and the failed streams reached their last chunk.
    assert registry.get_sample_value("gemini_api_tokens_total", GEN) == 40.0


def test_an_async_stream_abandoned_by_its_consumer_is_cancelled(
    app: Flask, registry: CollectorRegistry
) -> None:
    @track_gemini_call(**GEN)
    async def stream() -> AsyncIterator[int]:
        for index in range(10):
            await asyncio.sleep(STEP)
            yield index

    async def main() -> None:
        async for item in stream():
            if item == 2:
                break  # never closed by the consumer: the event loop finalizes it

    with app.app_context():
        asyncio.run(main())
    assert calls(registry, "cancelled") == 1.0
    assert duration(registry)[1] >= 3 * STEP


def test_a_cancelled_task_is_a_cancelled_call(app: Flask, registry: CollectorRegistry) -> None:
    @track_gemini_call(**GEN)
    async def generate() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(generate())
        await asyncio.sleep(3 * STEP)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with app.app_context():
        asyncio.run(main())
    assert calls(registry, "cancelled") == 1.0
    assert calls(registry, "error") == 0.0
    assert duration(registry)[1] >= 3 * STEP


def test_cancelled_is_a_status_record_gemini_usage_accepts(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    from flask_appmetrics import record_gemini_usage

    app = app_factory({"APPMETRICS_STRICT": True})
    with app.app_context():
        record_gemini_usage(status="cancelled", duration=0.5, **GEN)
        with pytest.raises(ValueError, match=r"^status:"):
            record_gemini_usage(status="aborted", **GEN)
    assert calls(registry, "cancelled") == 1.0


# -- in a host app, served as a WSGI server serves it ------------------------------------------


def test_a_streaming_view_whose_client_goes_away(registry: CollectorRegistry) -> None:
    """A chat app streams the model's answer; one client reads it all, one leaves after the
    first chunk (the server closes the body), one reads nothing before leaving."""
    app = Flask("chat_app")
    FlaskMetrics(registry=registry).init_app(app)

    @track_gemini_call(**GEN)
    def answer(prompt: str) -> Iterator[str]:
        for word in (prompt, "is", "answered"):
            time.sleep(STEP)
            yield word + " "

    @app.get("/chat")
    def chat() -> Response:
        return Response(stream_with_context(answer(request.args["q"])), mimetype="text/plain")

    def serve(read_chunks: int | None) -> bytes:
        environ = EnvironBuilder(path="/chat", query_string={"q": "life"}).get_environ()
        iterable, status, _ = run_wsgi_app(app, environ)
        assert status.startswith("200")
        received = []
        try:
            for index, data in enumerate(iterable):
                if read_chunks is not None and index >= read_chunks:
                    break  # the client disconnected
                received.append(data)
        finally:
            iterable.close()  # type: ignore[attr-defined]
        return b"".join(received)

    assert serve(None) == b"life is answered "
    assert serve(1) == b"life "
    serve(0)
    assert calls(registry, "success") == 1.0
    assert calls(registry, "cancelled") == 2.0
    assert calls(registry, "error") == 0.0
    count, total = duration(registry)
    assert count == 3.0
    assert total >= 3 * STEP + 2 * STEP + STEP
    # Every request is still counted once, whatever became of its stream.
    http = {"method": "GET", "endpoint": "/chat", "status": "200"}
    assert registry.get_sample_value("http_requests_total", http) == 3.0
