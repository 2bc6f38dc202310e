"""The LLM behind the example backend: one interface, two implementations.

:class:`OfflineGenerator` (the default) answers deterministically without any network, and
fails or slows down on demand, so errors, latency and the circuit breaker can be watched
on a laptop. :class:`GeminiGenerator` calls Google's Gemini API through google-genai; it
is chosen when ``GEMINI_API_KEY`` is set (see :func:`make_generator`).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

#: The model name the offline generator reports, so that its metrics look like those of a
#: backend calling Gemini 1.5 Flash (no real call is made with it: the model is retired).
OFFLINE_MODEL = "gemini-1.5-flash"
#: A current Gemini model for real calls (the 1.5 family is retired).
GEMINI_MODEL = "gemini-2.5-flash"
#: Longest delay a request may ask the offline generator for, in seconds.
MAX_SIMULATED_DELAY = 5.0


class GenerationError(Exception):
    """The LLM call failed (network, quota on Google's side, a bad answer)."""


@dataclass(frozen=True)
class Simulation:
    """Failure injection for one call; ignored by the real client.

    :param fail: make this call fail.
    :param delay: seconds to wait before answering (capped at :data:`MAX_SIMULATED_DELAY`).
    """

    fail: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class Generation:
    """One answer from the LLM.

    :param text: the generated text.
    :param model: the model that produced it.
    :param input_tokens: prompt tokens billed.
    :param output_tokens: generated tokens billed.
    :param usage_metadata: google-genai's ``usage_metadata`` when a real call returned one.
    """

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    usage_metadata: Any = None


class TextGenerator(Protocol):
    """What the backend needs from an LLM."""

    #: The model name used in metric labels.
    model: str

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Generation:
        """Answer *prompt*.

        :raises GenerationError: the call failed.
        """
        ...


def estimate_tokens(text: str) -> int:
    """Gemini's rule of thumb: about four characters per token."""
    return max(1, (len(text) + 3) // 4)


_WORDS = [
    "foundations",
    "history",
    "principles",
    "methods",
    "applications",
    "examples",
    "challenges",
    "tools",
    "models",
    "theory",
    "practice",
    "patterns",
    "limits",
    "trade-offs",
    "future",
    "ethics",
    "measurement",
    "design",
    "analysis",
    "systems",
    "evolution",
]


class OfflineGenerator:
    """A deterministic stand-in for Gemini: same prompt, same answer, no network.

    :param model: the model name to report.
    :param failure_rate: fraction of calls that fail on their own (0 by default), drawn from
        a seeded generator so a run is reproducible.
    :param base_delay: seconds every call takes, to make latency visible.
    :param seed: seed of the failure draws.
    """

    def __init__(
        self,
        model: str = OFFLINE_MODEL,
        *,
        failure_rate: float = 0.0,
        base_delay: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.model = model
        self._failure_rate = failure_rate
        self._base_delay = base_delay
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Generation:
        simulation = simulation or Simulation()
        delay = min(self._base_delay + max(simulation.delay, 0.0), MAX_SIMULATED_DELAY)
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            unlucky = self._failure_rate > 0 and self._random.random() < self._failure_rate
        if simulation.fail or unlucky:
            raise GenerationError("offline generator: simulated failure")
        text = self._answer(prompt)
        return Generation(
            text=text,
            model=self.model,
            input_tokens=estimate_tokens(prompt),
            output_tokens=estimate_tokens(text),
        )

    @staticmethod
    def _answer(prompt: str) -> str:
        # Eight lines whose words depend only on the prompt, like a numbered list from a
        # model: the subtopic and explanation parsers see the same shape as real output.
        digest = hashlib.sha256(prompt.encode()).digest()
        subject = prompt.rsplit(":", 1)[-1].strip() or "the topic"
        lines = []
        for i in range(8):
            word = _WORDS[digest[i] % len(_WORDS)]
            other = _WORDS[digest[i + 8] % len(_WORDS)]
            lines.append(f"{i + 1}. {word.capitalize()} of {subject}: {other} and {word}.")
        return "\n".join(lines)


class GeminiGenerator:
    """Google's Gemini API through google-genai.

    :param api_key: the API key (``GEMINI_API_KEY``).
    :param model: the model to call.
    :param base_url: another API root (a local stand-in in tests); ``None`` for Google's.
    :param timeout: seconds before a call is abandoned.
    """

    def __init__(
        self,
        api_key: str,
        model: str = GEMINI_MODEL,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000))
        self._client = genai.Client(api_key=api_key, http_options=options)
        self.model = model

    def generate(self, prompt: str, *, simulation: Simulation | None = None) -> Generation:
        from google.genai import errors

        # A real model is not asked to fail; failures here are real ones.
        try:
            response = self._client.models.generate_content(model=self.model, contents=prompt)
        except errors.APIError as exc:
            raise GenerationError(f"Gemini API error {exc.code}: {exc.message}") from exc
        except Exception as exc:
            # Transport failures (refused, timeout, TLS) come from the SDK's HTTP library;
            # for the breaker and the caller they are all one kind of failure.
            raise GenerationError(f"Gemini API unreachable: {exc!r}") from exc
        text = response.text
        if not text:
            raise GenerationError("Gemini returned no text (blocked or empty answer)")
        usage = response.usage_metadata
        input_tokens = (usage.prompt_token_count or 0) if usage else estimate_tokens(prompt)
        output_tokens = (usage.candidates_token_count or 0) if usage else estimate_tokens(text)
        return Generation(
            text=text,
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            usage_metadata=usage,
        )
