"""Token counts of one LLM call: :class:`TokenUsage`.

A bottom module (it imports nothing of the package) so that both the price table
(:mod:`flask_appmetrics.llm.pricing`, read by the config) and the google-genai integration
(:mod:`flask_appmetrics.integrations.genai`, which re-exports it) can use it without an
import running up the layers.

Gemini's ``prompt_token_count`` includes the ``cached_content_token_count`` served from
the context cache, and ``thoughts_token_count`` (billed as output) is separate from
``candidates_token_count``. :class:`TokenUsage` keeps that meaning: ``input`` includes
``cached``; ``output`` does not include ``thoughts``. These are OpenTelemetry's GenAI
``gen_ai.token.type`` names ``input`` and ``output``, plus Gemini's two extra kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

#: ``usage_metadata`` field for each :class:`TokenUsage` field.
FIELDS: Mapping[str, str] = {
    "input": "prompt_token_count",
    "output": "candidates_token_count",
    "thoughts": "thoughts_token_count",
    "cached": "cached_content_token_count",
    "total": "total_token_count",
}


@dataclass(frozen=True)
class TokenUsage:
    """The tokens of one call; ``None`` where unknown.

    :param input: prompt tokens, cached ones included.
    :param output: response (candidate) tokens.
    :param thoughts: reasoning tokens of thinking models (billed as output).
    :param cached: prompt tokens served from the context cache (part of *input*).
    :param total: all tokens of the call, as the API counts them.
    """

    input: int | None = None
    output: int | None = None
    thoughts: int | None = None
    cached: int | None = None
    total: int | None = None

    def with_overrides(self, **counts: int | None) -> TokenUsage:
        """A copy where each count given (not ``None``) replaces this one's."""
        given = {name: value for name, value in counts.items() if value is not None}
        return replace(self, **given) if given else self

    def total_tokens(self) -> int | None:
        """:attr:`total`, else the sum of the parts that are known (``None`` if none)."""
        if self.total is not None:
            return self.total
        parts = [n for n in (self.input, self.output, self.thoughts) if n is not None]
        return sum(parts) if parts else None

    def breakdown(self) -> dict[str, int]:
        """Known counts by OpenTelemetry-style token type (``input``, ``output``, ...)."""
        pairs = (
            ("input", self.input),
            ("output", self.output),
            ("thoughts", self.thoughts),
            ("cached", self.cached),
        )
        return {name: value for name, value in pairs if value is not None}
