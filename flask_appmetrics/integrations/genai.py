"""Token counts from google-genai responses.

Works on the objects themselves (``GenerateContentResponse`` or its ``usage_metadata``, or
the same fields as a mapping), so this module does not import google-genai.

Gemini's ``prompt_token_count`` includes the ``cached_content_token_count`` served from
the context cache, and ``thoughts_token_count`` (billed as output) is separate from
``candidates_token_count``. :class:`TokenUsage` keeps that meaning: ``input`` includes
``cached``; ``output`` does not include ``thoughts``. These are OpenTelemetry's GenAI
``gen_ai.token.type`` names ``input`` and ``output``, plus Gemini's two extra kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .. import _validation

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


def token_usage(source: object) -> TokenUsage:
    """Read a :class:`TokenUsage` from a response, its ``usage_metadata``, or a mapping.

    A response without usage metadata gives an empty usage.

    :raises TypeError: a count is not an integer, or *source* has none of the fields.
    :raises ValueError: a count is negative.
    """
    metadata: Any = getattr(source, "usage_metadata", source)
    if isinstance(metadata, Mapping) and "usage_metadata" in metadata:
        metadata = metadata["usage_metadata"]  # a response as a dict (``model_dump()``)
    if metadata is None:
        return TokenUsage()
    get: Callable[[str], object]
    if isinstance(metadata, Mapping):
        if metadata and not any(name in metadata for name in FIELDS.values()):
            raise TypeError(f"usage_metadata: a mapping without any of {sorted(FIELDS.values())}")
        get = metadata.get
    elif any(hasattr(metadata, name) for name in FIELDS.values()):

        def get(name: str) -> object:
            return getattr(metadata, name, None)

    else:
        raise TypeError(
            f"usage_metadata: expected a google-genai response or usage metadata, "
            f"got {type(source).__name__}"
        )
    counts = {
        ours: _validation.optional_count(f"usage_metadata.{theirs}", get(theirs))
        for ours, theirs in FIELDS.items()
    }
    return TokenUsage(**counts)
