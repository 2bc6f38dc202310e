"""google-genai: an instrumented client, and token counts read from its responses.

* :func:`instrument_client` / :func:`uninstrument_client`
  (:mod:`~flask_appmetrics.integrations.genai.client`): record every call of a
  ``google.genai.Client``.
* :func:`token_usage` (:mod:`~flask_appmetrics.integrations.genai.tokens`): the token counts
  of a response.
* :mod:`~flask_appmetrics.integrations.genai.errors` and
  :mod:`~flask_appmetrics.integrations.genai.responses`: what a failure or a response says
  (``error_type``, quota refusals, finish reasons).

None of them imports google-genai: they work on its objects.
"""

from __future__ import annotations

from .client import instrument_client, is_instrumented, uninstrument_client
from .tokens import FIELDS, TokenUsage, token_usage

__all__ = [
    "FIELDS",
    "TokenUsage",
    "instrument_client",
    "is_instrumented",
    "token_usage",
    "uninstrument_client",
]
