"""The content service: cache, then quota, then the circuit breaker around the LLM.

One :class:`ContentService` per app, in ``app.extensions["example_app"]``. Every step
reports to flask-appmetrics through its public API only: the cache through the
Flask-Caching integration, the LLM calls through the instrumented google-genai client
(:mod:`example_app.llm`: nothing to write here), the breaker through the pybreaker
listener, business events through the metrics the app declared (:mod:`example_app.business`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pybreaker

from . import content
from .llm import Generation, GenerationError, Simulation, TextGenerator, UpstreamQuotaExceeded

if TYPE_CHECKING:
    from flask_caching import Cache

    from .business import BusinessMetrics
    from .quota import QuotaGuard

logger = logging.getLogger(__name__)

#: ``service`` label of the breaker guarding the LLM.
LLM_SERVICE = "gemini"


class ServiceUnavailable(Exception):
    """The LLM cannot be called now (breaker open); the caller should retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(Exception):
    """The LLM quota is used up for now (ours, or Google's)."""

    def __init__(self, limit: str, retry_after: float) -> None:
        super().__init__(f"{limit} quota exceeded")
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True)
class Result:
    """Generated content and where it came from."""

    value: Any
    cached: bool


class ContentService:
    """Generates subtopics, explanations and illustrations for a topic.

    :param generator: the LLM.
    :param cache: the app's Flask-Caching cache.
    :param breaker: the circuit breaker around the LLM.
    :param quota: refuses calls over the configured rate.
    :param business: the app's business metrics.
    :param cache_seconds: how long generated content stays cached.
    """

    def __init__(
        self,
        generator: TextGenerator,
        cache: Cache,
        breaker: pybreaker.CircuitBreaker,
        quota: QuotaGuard,
        business: BusinessMetrics,
        *,
        cache_seconds: int,
    ) -> None:
        self.generator = generator
        self.cache = cache
        self.breaker = breaker
        self.quota = quota
        self.business = business
        self.cache_seconds = cache_seconds

    # -- the three kinds of content ----------------------------------------------------------

    def subtopics(self, topic: str, *, simulation: Simulation) -> Result:
        key = f"subtopics:{topic}"
        cached = self._cached(key, simulation)
        if cached is not None:
            return Result(cached, cached=True)
        generation = self._call(content.subtopics_prompt(topic), simulation)
        items = content.parse_subtopics(generation.text)
        self.business.subtopics(len(items))
        self.business.quality("subtopics", content.quality_score(generation.text, expected_items=8))
        self.cache.set(key, items, timeout=self.cache_seconds)
        return Result(items, cached=False)

    def explanation(self, topic: str, subtopic: str | None, *, simulation: Simulation) -> Result:
        key = f"explanation:{topic}:{subtopic or ''}"
        cached = self._cached(key, simulation)
        if cached is not None:
            return Result(cached, cached=True)
        generation = self._call(content.explanation_prompt(topic, subtopic), simulation)
        self.business.explanation()
        self.business.quality("explanation", content.quality_score(generation.text))
        self.cache.set(key, generation.text, timeout=self.cache_seconds)
        return Result(generation.text, cached=False)

    def explanation_stream(
        self, topic: str, subtopic: str | None, *, simulation: Simulation
    ) -> Iterator[str]:
        """An explanation streamed as the model writes it (never cached).

        The quota and the breaker are checked, and the first piece read, before this
        returns: a refusal or a failure before any text is raised here, so the route can
        answer with a status; a failure later cuts the stream short.
        """
        self._check_quota()
        pieces = self.generator.stream(
            content.explanation_prompt(topic, subtopic), simulation=simulation
        )
        try:
            with self.breaker.calling():
                first = next(pieces, "")
        except pybreaker.CircuitBreakerError as exc:
            pieces.close()
            raise self._unavailable() from exc
        except UpstreamQuotaExceeded as exc:
            raise QuotaExceeded("Gemini API", retry_after=exc.retry_after) from exc

        def rest() -> Iterator[str]:
            yield first
            try:
                yield from pieces
            except GenerationError as exc:
                logger.warning("explanation stream for %r cut short: %s", topic, exc)
                return
            self.business.explanation()

        return rest()

    def illustration(self, topic: str, *, simulation: Simulation) -> Result:
        """An SVG for *topic*; a placeholder (still an image) when the LLM is unavailable."""
        key = f"image:{topic}"
        cached = self._cached(key, simulation)
        if cached is not None:
            return Result(cached, cached=True)
        try:
            generation = self._call(content.image_prompt(topic), simulation)
        except (GenerationError, ServiceUnavailable) as exc:
            # Degrade, don't fail: the page still gets a picture, and the metrics say so.
            logger.warning("illustration for %r falls back to a placeholder: %s", topic, exc)
            self.business.image("placeholder")
            svg = content.illustration_svg(topic, topic)
            return Result({"svg": svg, "source": "placeholder"}, cached=False)
        caption = generation.text.splitlines()[0] if generation.text else topic
        svg = content.illustration_svg(topic, caption)
        self.business.image("generated")
        self.business.quality("image", content.quality_score(caption))
        value = {"svg": svg, "source": "generated"}
        self.cache.set(key, value, timeout=self.cache_seconds)
        return Result(value, cached=False)

    # -- steps -------------------------------------------------------------------------------

    def _cached(self, key: str, simulation: Simulation) -> Any:
        if simulation.fail or simulation.delay or simulation.scenario:
            # A request that asks for a failure or a slow call must reach the LLM.
            return None
        return self.cache.get(key)

    def _check_quota(self) -> None:
        refused = self.quota.refused()
        if refused is not None:
            raise QuotaExceeded(refused, retry_after=self.quota.retry_after())

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"{LLM_SERVICE} is unavailable (circuit breaker open)",
            retry_after=self.breaker.reset_timeout,
        )

    def _call(self, prompt: str, simulation: Simulation) -> Generation:
        """Call the LLM through the quota and the breaker (the client records the call).

        :raises QuotaExceeded: over the configured rate (the LLM was not called), or
            Google refused the call (HTTP 429).
        :raises ServiceUnavailable: the breaker is open; the LLM was not called.
        :raises GenerationError: the call failed.
        """
        self._check_quota()
        try:
            # calling(), not call(): pybreaker's call() holds the breaker's lock for the
            # whole call, which would serialise every LLM request of the process.
            with self.breaker.calling():
                return self.generator.generate(prompt, simulation=simulation)
        except pybreaker.CircuitBreakerError as exc:
            raise self._unavailable() from exc
        except UpstreamQuotaExceeded as exc:
            raise QuotaExceeded("Gemini API", retry_after=exc.retry_after) from exc
