"""What a google-genai response says besides its tokens: why generation stopped, and which
model answered.

Works on the objects (``GenerateContentResponse``, a streamed chunk) or their
``model_dump()`` mappings, without importing google-genai.

Finish reasons are Gemini's ``FinishReason`` names (``STOP``, ``MAX_TOKENS``, ``SAFETY``,
``RECITATION``, ``BLOCKLIST``, ...), one per candidate. A prompt blocked before any
generation has no candidate; its ``prompt_feedback.block_reason`` is reported as
``PROMPT_`` and the reason (``PROMPT_SAFETY``, ``PROMPT_BLOCKLIST``, ...). A value outside
the known ones becomes ``_OTHER``, so that the series stay bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

#: Gemini's finish reasons (google-genai's ``types.FinishReason``; the members of the
#: installed google-genai are added when it is importable, see :func:`known_reasons`).
FINISH_REASONS = (
    "FINISH_REASON_UNSPECIFIED",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_OTHER",
    "NO_IMAGE",
    "IMAGE_RECITATION",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE",
    "MALFORMED_RESPONSE",
)
#: Gemini's reasons for blocking a prompt (``types.BlockedReason``).
BLOCK_REASONS = (
    "BLOCKED_REASON_UNSPECIFIED",
    "SAFETY",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "IMAGE_SAFETY",
)
#: The value of an unknown reason.
OTHER = "_OTHER"
# A response lists one finish reason per candidate; more are not counted.
_MAX_CANDIDATES = 8


@dataclass(frozen=True)
class ResponseFacts:
    """The finish reasons of a response (one per candidate that has one) and the model
    version that answered (``None`` when it does not say)."""

    finish_reasons: tuple[str, ...] = ()
    response_model: str | None = None


_known: frozenset[str] | None = None


def known_reasons() -> frozenset[str]:
    """Every finish reason label value but ``_OTHER``: :data:`FINISH_REASONS` with the
    installed google-genai's members, and the ``PROMPT_`` block reasons."""
    global _known  # noqa: PLW0603 - computed once per process
    if _known is None:
        reasons = set(FINISH_REASONS)
        blocks = set(BLOCK_REASONS)
        try:
            from google.genai import types
        except ImportError:
            pass
        else:
            reasons |= {member.value for member in types.FinishReason}
            blocks |= {member.value for member in types.BlockedReason}
        _known = frozenset(reasons | {f"PROMPT_{reason}" for reason in blocks})
    return _known


def reason_label(value: object) -> str:
    """A finish reason as a bounded label value."""
    if isinstance(value, Enum):
        value = value.value
    return value if isinstance(value, str) and value in known_reasons() else OTHER


def _get(source: object, name: str, alias: str) -> object:
    if isinstance(source, Mapping):
        return source.get(name, source.get(alias))
    return getattr(source, name, None)


def describe(response: object) -> ResponseFacts:
    """The :class:`ResponseFacts` of a response or streamed chunk (empty for anything else)."""
    if response is None:
        return ResponseFacts()
    reasons: list[str] = []
    candidates = _get(response, "candidates", "candidates")
    if isinstance(candidates, (list, tuple)):
        for candidate in candidates[:_MAX_CANDIDATES]:
            reason = _get(candidate, "finish_reason", "finishReason")
            if reason is not None:
                reasons.append(reason_label(reason))
    if not reasons:
        feedback = _get(response, "prompt_feedback", "promptFeedback")
        block = _get(feedback, "block_reason", "blockReason") if feedback is not None else None
        if block is not None:
            if isinstance(block, Enum):
                block = block.value
            reasons.append(reason_label(f"PROMPT_{block}"))
    model = _get(response, "model_version", "modelVersion")
    return ResponseFacts(tuple(reasons), model if isinstance(model, str) and model else None)
