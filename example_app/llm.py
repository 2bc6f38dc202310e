"""The LLM behind the example backend: Google's Gemini API through google-genai, recorded by
flask-appmetrics' instrumented client.

One implementation, two destinations. With ``GEMINI_API_KEY`` set it calls Google. Without
(the default), the very same google-genai client calls a local server that speaks the
Gemini REST API (:mod:`example_app.fake_gemini`): requests, SSE streaming, quota refusals
and safety blocks all go through google-genai's real code, offline. Only then can a
request ask for trouble (:class:`Simulation`): a failure, a delay, or any scenario of the
fake server (``429``, ``safety``, ``max-tokens``...), sent as request headers Google's API
would ignore but the stand-in obeys.

Every call is recorded by :func:`flask_appmetrics.integrations.genai.instrument_client`,
set up once on the client: no hand-written metrics here.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from flask_appmetrics.integrations.genai import instrument_client

from . import fake_gemini

#: The model the backend asks for.
GEMINI_MODEL = "gemini-2.5-flash"
#: Longest delay a request may ask the offline server for, in seconds.
MAX_SIMULATED_DELAY = 5.0
#: Scenarios a request may ask the offline server for (``?scenario=``).
SCENARIOS = tuple(s for s in fake_gemini.SCENARIOS if s != "slow")


class GenerationError(Exception):
    """The LLM call failed (network, Google's side, a bad answer)."""


class UpstreamQuotaExceeded(GenerationError):
    """Google refused the call: a quota is used up (HTTP 429 ``RESOURCE_EXHAUSTED``)."""

    def __init__(self, message: str, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContentBlocked(GenerationError):
    """The model answered, but its answer (or the prompt) was blocked (``SAFETY``, ...):
    the API works, this request cannot be served."""


@dataclass(frozen=True)
class Simulation:
    """Trouble one offline call asks for; ignored by Google's API.

    :param fail: make this call fail (the server answers 503 ``UNAVAILABLE``).
    :param delay: seconds to wait before answering (capped at :data:`MAX_SIMULATED_DELAY`).
    :param scenario: one of :data:`SCENARIOS`, e.g. ``"429"`` or ``"safety"``.
    """

    fail: bool = False
    delay: float = 0.0
    scenario: str | None = None


@dataclass(frozen=True)
class Generation:
    """One answer from the LLM: its text, the model asked, why it stopped."""

    text: str
    model: str
    finish_reason: str | None = None


class TextGenerator(Protocol):
    """What the backend needs from an LLM."""

    #: The model name asked for.
    model: str

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Generation:
        """Answer *prompt*.

        :raises GenerationError: the call failed.
        """
        ...

    def stream(
        self, prompt: str, *, simulation: Simulation | None = None
    ) -> Generator[str, None, None]:
        """Answer *prompt* piece by piece, as the model streams it.

        :raises GenerationError: the call failed (when the first piece is asked for, or later).
        """
        ...


class GeminiGenerator:
    """Gemini through an instrumented google-genai client.

    :param api_key: the API key (``GEMINI_API_KEY``; any value for the offline server).
    :param model: the model to call.
    :param base_url: another API root (the offline server); ``None`` for Google's.
    :param timeout: seconds before a call is abandoned.
    :param simulate: send :class:`Simulation` to the server (only the offline one obeys).
    :param failure_rate: share of calls that fail on their own (offline), drawn from a
        seeded generator so a run is reproducible.
    :param base_delay: seconds every call takes (offline), to make latency visible.
    :param seed: seed of the failure draws.
    """

    def __init__(
        self,
        api_key: str,
        model: str = GEMINI_MODEL,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        simulate: bool = False,
        failure_rate: float = 0.0,
        base_delay: float = 0.0,
        seed: int = 0,
    ) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        options = types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000))
        # The one line that records every call: calls, latency, tokens, cost, errors by
        # type, finish reasons, streams' time to first chunk, quota refusals.
        self.client = instrument_client(genai.Client(api_key=api_key, http_options=options))
        self.model = model
        #: The API root called (``None``: Google's).
        self.base_url = base_url
        self.simulate = simulate
        self._failure_rate = failure_rate
        self._base_delay = base_delay
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Generation:
        from google.genai import errors

        try:
            response = self.client.models.generate_content(
                model=self.model, contents=prompt, config=self._config(simulation)
            )
        except errors.APIError as exc:
            raise _api_failure(exc) from exc
        except Exception as exc:
            # Transport failures (refused, timeout, TLS) come from the SDK's HTTP library;
            # for the breaker and the caller they are all one kind of failure.
            raise GenerationError(f"Gemini API unreachable: {exc!r}") from exc
        finish = _finish_reason(response)
        text = response.text
        if not text:
            raise ContentBlocked(f"Gemini returned no text (finish reason {finish})")
        return Generation(text=text, model=self.model, finish_reason=finish)

    def stream(
        self, prompt: str, *, simulation: Simulation | None = None
    ) -> Generator[str, None, None]:
        from google.genai import errors

        chunks = self.client.models.generate_content_stream(
            model=self.model, contents=prompt, config=self._config(simulation)
        )
        try:
            streamed, blocked = False, None
            # Read to the end, even a blocked answer: the stream is then a complete call.
            for chunk in chunks:
                if chunk.text:
                    streamed = True
                    yield chunk.text
                elif _finish_reason(chunk) not in (None, "STOP"):
                    blocked = _finish_reason(chunk)
            if not streamed:
                raise ContentBlocked(f"Gemini returned no text (finish reason {blocked})")
        except errors.APIError as exc:
            raise _api_failure(exc) from exc
        except GenerationError:
            raise
        except Exception as exc:
            raise GenerationError(f"Gemini API unreachable: {exc!r}") from exc
        finally:
            # Stopped early (the client went away): close the stream, and its HTTP response.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _config(self, simulation: Simulation | None) -> Any:
        """Per-request options carrying the simulation to the offline server."""
        if not self.simulate:
            return None
        simulation = simulation or Simulation()
        with self._lock:
            unlucky = self._failure_rate > 0 and self._random.random() < self._failure_rate
        headers: dict[str, str] = {}
        if simulation.fail or unlucky:
            headers[fake_gemini.SCENARIO_HEADER] = "503"
        elif simulation.scenario is not None:
            headers[fake_gemini.SCENARIO_HEADER] = simulation.scenario
        delay = min(self._base_delay + max(simulation.delay, 0.0), MAX_SIMULATED_DELAY)
        if delay > 0:
            headers[fake_gemini.DELAY_HEADER] = f"{delay:.3f}"
        if not headers:
            return None
        types = self._types
        return types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers))


def offline_generator(
    model: str = GEMINI_MODEL, *, failure_rate: float = 0.0, base_delay: float = 0.0
) -> GeminiGenerator:
    """The generator the backend uses without ``GEMINI_API_KEY``: the real client, talking
    to the process's offline server (started on first use)."""
    server = fake_gemini.shared()
    return GeminiGenerator(
        "offline",
        model,
        base_url=server.url,
        simulate=True,
        failure_rate=failure_rate,
        base_delay=base_delay,
    )


def _finish_reason(response: Any) -> str | None:
    candidates = getattr(response, "candidates", None) or []
    reason = getattr(candidates[0], "finish_reason", None) if candidates else None
    if reason is None:
        feedback = getattr(response, "prompt_feedback", None)
        block = getattr(feedback, "block_reason", None)
        return f"PROMPT_{getattr(block, 'value', block)}" if block is not None else None
    return str(getattr(reason, "value", reason))


def _api_failure(exc: Any) -> GenerationError:
    if exc.code == 429:
        return UpstreamQuotaExceeded(f"Gemini quota exceeded: {exc.message}", _retry_delay(exc))
    return GenerationError(f"Gemini API error {exc.code}: {exc.message}")


def _retry_delay(exc: Any, default: float = 60.0) -> float:
    """The wait a 429 asks for (its ``google.rpc.RetryInfo``, e.g. ``"21s"``), in seconds."""
    body = exc.details.get("error", {}) if isinstance(exc.details, dict) else {}
    for detail in body.get("details", []) if isinstance(body, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 1.0)
            except ValueError:
                break
    return default
