"""Fixtures of the LLM tests: the Gemini API stand-in, served once per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.gemini import FakeGemini, client_for


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture
def gemini(gemini_server: FakeGemini) -> FakeGemini:
    """The stand-in, with its defaults back for each test."""
    gemini_server.scenario = "normal"
    gemini_server.rpm_limit = 15
    gemini_server.slow_seconds = 2.0
    gemini_server.stream_chunks = 3
    return gemini_server


@pytest.fixture
def make_client(gemini: FakeGemini) -> Iterator[Callable[..., Any]]:
    """``make_client(server=gemini, *, timeout=10.0, **options)``: a real google-genai client
    of the stand-in (or another base URL), closed after the test. Async tests close
    ``client.aio`` themselves, inside their event loop."""
    made: list[Any] = []

    def make(server: FakeGemini | str | None = None, **options: Any) -> Any:
        client = client_for(server if server is not None else gemini, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def shared_client(gemini_server: FakeGemini) -> Iterator[Any]:
    """One google-genai client of the stand-in per module (making one costs a TLS context,
    a good part of a second)."""
    client = client_for(gemini_server)
    yield client
    client.close()


@pytest.fixture
def genai_client(shared_client: Any, gemini: FakeGemini) -> Iterator[Any]:
    """The module's client, instrumented for this test only."""
    from flask_appmetrics.integrations.genai import instrument_client, uninstrument_client

    yield instrument_client(shared_client)
    uninstrument_client(shared_client)
