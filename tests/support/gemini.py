"""The local Gemini API stand-in (the example backend's, :mod:`example_app.fake_gemini`) and
real google-genai clients pointed at it, for the LLM tests.

The server speaks the Gemini REST API over real HTTP; the client is google-genai's own,
with its request building, transport, SSE parsing and error classes: nothing is mocked.
"""

from __future__ import annotations

from typing import Any

from example_app.fake_gemini import SCENARIO_HEADER, SCENARIOS, FakeGemini

__all__ = ["SCENARIOS", "FakeGemini", "client_for", "scenario"]


def client_for(server: FakeGemini | str, *, timeout: float = 10.0, **options: Any) -> Any:
    """A ``google.genai.Client`` calling *server* (or a base URL), with a timeout in seconds."""
    from google import genai
    from google.genai import types

    url = server if isinstance(server, str) else server.url
    http = types.HttpOptions(base_url=url, timeout=int(timeout * 1000))
    return genai.Client(api_key="test-key", http_options=http, **options)


def scenario(name: str) -> Any:
    """A ``GenerateContentConfig`` asking the stand-in for *name* (a per-request header, as
    an app would send any header)."""
    from google.genai import types

    if name not in SCENARIOS:
        raise ValueError(name)
    return types.GenerateContentConfig(
        http_options=types.HttpOptions(headers={SCENARIO_HEADER: name})
    )
