"""Quota limits learned from the API's refusals, for apps that configure none.

An app that sets no ``APPMETRICS_QUOTA_*`` limit still meets Gemini's: a call over one is
refused with HTTP 429 ``RESOURCE_EXHAUSTED``. Two things can be learned from that refusal:

* **reported**: Gemini's 429 usually carries a ``google.rpc.QuotaFailure`` naming the
  quota (``quotaId``, e.g. ``GenerateRequestsPerMinutePerProjectPerModel``) and its value
  (``quotaValue``). That is the provider's own statement of the limit: exported as is, the
  latest one wins.
* **observed**: without those details, the requests and tokens of that model that went
  through in the current minute before the refusal. At least one of the per-minute limits
  was reached at that level, or a daily one was: the values say how much traffic a minute
  held when the API started refusing, not which limit refused it. Each minute with a
  refusal learns again from its first refusal, so a burst that ends and returns is
  measured afresh.

Limits are per model, as Gemini's are (per project and model). Pure Python with an
injectable clock; :class:`InMemoryLearnedLimits` is one process's view,
:class:`~flask_appmetrics.integrations.redis.llm.SharedLearnedLimits` every process's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: ``limit`` values of a refusal: the four quota dimensions, or ``unknown`` when the API
#: did not say which quota refused the call.
REFUSAL_LIMITS = ("rpm", "tpm", "rpd", "tpd", "unknown")
#: ``source`` values of a learned limit.
SOURCES = ("reported", "observed")
#: Models whose counts and limits are kept; further models are not learned about (model
#: names reach here already bounded, this only caps the memory of a misuse).
MAX_MODELS = 200


@dataclass(frozen=True)
class LearnedLimit:
    """One learned limit: *value* per minute or day (``limit``) for *model*."""

    model: str
    limit: str
    value: float
    source: str


class LearnedLimits(Protocol):
    """Counts each model's calls this minute and learns limits from refusals."""

    def note_call(self, model: str, tokens: int) -> None:
        """Count one call of *model* that went through (and its tokens) this minute."""
        ...

    def refused(self, model: str, limit: str, reported: int | None) -> None:
        """Learn from a refusal of *model*: *limit* (one of :data:`REFUSAL_LIMITS`) and the
        value the API reported for it, if any."""
        ...

    def limits(self) -> tuple[LearnedLimit, ...]:
        """Everything learned so far."""
        ...


class InMemoryLearnedLimits:
    """:class:`LearnedLimits` for one process.

    :param clock: seconds since the epoch; ``time.time`` unless testing.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # model -> (minute, requests, tokens) of the calls that went through
        self._minute: dict[str, tuple[int, int, int]] = {}
        # model -> the minute whose first refusal was learned from
        self._observed_at: dict[str, int] = {}
        self._learned: dict[tuple[str, str], LearnedLimit] = {}

    def _current(self, model: str, minute: int) -> tuple[int, int]:
        kept = self._minute.get(model)
        if kept is None or kept[0] != minute:
            return 0, 0
        return kept[1], kept[2]

    def note_call(self, model: str, tokens: int) -> None:
        minute = int(self._clock() // 60)
        with self._lock:
            if model not in self._minute and len(self._minute) >= MAX_MODELS:
                return
            requests, used = self._current(model, minute)
            self._minute[model] = (minute, requests + 1, used + tokens)

    def refused(self, model: str, limit: str, reported: int | None) -> None:
        minute = int(self._clock() // 60)
        with self._lock:
            if len(self._observed_at) >= MAX_MODELS and model not in self._observed_at:
                return
            if reported is not None and limit in ("rpm", "tpm", "rpd", "tpd"):
                self._learned[(model, limit)] = LearnedLimit(
                    model, limit, float(reported), "reported"
                )
                self._observed_at.setdefault(model, -1)
                return
            if self._observed_at.get(model) == minute:
                return  # this minute's first refusal was learned from already
            self._observed_at[model] = minute
            requests, tokens = self._current(model, minute)
            for name, value in (("rpm", requests), ("tpm", tokens)):
                if self._learned.get((model, name), _NONE).source != "reported":
                    self._learned[(model, name)] = LearnedLimit(
                        model, name, float(value), "observed"
                    )

    def limits(self) -> tuple[LearnedLimit, ...]:
        with self._lock:
            return tuple(self._learned.values())


_NONE = LearnedLimit("", "", 0.0, "")
