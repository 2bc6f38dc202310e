"""Token counts from google-genai responses.

Works on the objects themselves (``GenerateContentResponse`` or its ``usage_metadata``, or
the same fields as a mapping), so this module does not import google-genai.

:class:`TokenUsage` (what the counts mean) lives in :mod:`flask_appmetrics.llm.tokens`, a
bottom module the price table uses too; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ...llm.tokens import FIELDS, TokenUsage
from ...recording import validation as _validation

__all__ = ["FIELDS", "TokenUsage", "token_usage"]


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
