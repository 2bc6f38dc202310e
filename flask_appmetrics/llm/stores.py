"""Where a registry keeps what its LLM accounting learns over time: today's spend and the
limits learned from refusals. In process by default; shared through Redis when the app
has ``APPMETRICS_REDIS_URL`` (:mod:`flask_appmetrics.integrations.redis.llm`)."""

from __future__ import annotations

from dataclasses import dataclass

from .budget import SpendCounter
from .learned import LearnedLimits


@dataclass(frozen=True)
class LlmStores:
    """Today's spend and the learned quota limits."""

    spend: SpendCounter
    learned: LearnedLimits
