"""Token counts of one LLM call: :class:`TokenUsage`.

A bottom module (it imports nothing of the package) so that both the price table
(:mod:`flask_appmetrics.llm.pricing`, read by the config) and the google-genai integration
(:mod:`flask_appmetrics.integrations.genai`, which re-exports it) can use it without an
import running up the layers.

Gemini's ``prompt_token_count`` includes the ``cached_content_token_count`` served from
the context cache, and ``thoughts_token_count`` (billed as output) is separate from
``candidates_token_count``. :class:`TokenUsage` keeps Gemini's fields as they are
(``output`` is the candidates' tokens, without ``thoughts``); what is exported follows
OpenTelemetry's GenAI ``gen_ai.token.type`` and Gemini's billing instead: *input* includes
the cached tokens and *output* includes the reasoning ones (:meth:`TokenUsage.output_total`,
:meth:`TokenUsage.breakdown`).
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

    def output_total(self) -> int | None:
        """Output tokens as OpenTelemetry and Gemini's billing count them: the response's
        and the reasoning ones (``None`` if neither is known)."""
        if self.output is None and self.thoughts is None:
            return None
        return (self.output or 0) + (self.thoughts or 0)

    def breakdown(self) -> dict[str, int]:
        """Known counts by token type: ``input`` (cached included) and ``output`` (thoughts
        included), OpenTelemetry's ``gen_ai.token.type`` values, and the parts of each shown
        on their own, ``cached`` and ``thoughts``."""
        pairs = (
            ("input", self.input),
            ("output", self.output_total()),
            ("thoughts", self.thoughts),
            ("cached", self.cached),
        )
        return {name: value for name, value in pairs if value is not None}
