"""Refuse LLM calls over the configured quota, before they are made.

flask-appmetrics counts the usage (every recorded Gemini call counts one request and its
tokens) and exports it with the limits; this guard reads the same numbers through
:func:`flask_appmetrics.quota_usage` so the backend answers 429 instead of letting Google
refuse the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from flask_appmetrics import QuotaLimits, quota_usage


@dataclass(frozen=True)
class QuotaGuard:
    """Checks the current usage against *limits* (the app's ``APPMETRICS_QUOTA_*``)."""

    limits: QuotaLimits

    def refused(self) -> str | None:
        """The first limit one more call would exceed (``rpm``, ``tpm``, ...), or ``None``."""
        usage = quota_usage()
        if usage is None:
            return None
        # One more call is one more request; its tokens are not known before it is made.
        after = replace(
            usage,
            requests_minute=usage.requests_minute + 1,
            requests_today=usage.requests_today + 1,
        )
        exceeded = self.limits.exceeded(after)
        return exceeded[0] if exceeded else None

    @staticmethod
    def retry_after() -> float:
        """Seconds to the next minute, when the per-minute counts start again."""
        return 60.0 - time.time() % 60.0
