"""The names and numbers of OpenTelemetry's GenAI semantic conventions that the ``gen_ai_*``
families follow, and the two LLM family sets.

Followed version: :data:`SEMCONV_VERSION`, the last release of the conventions in
OpenTelemetry's main semantic-conventions repository (they have moved to
``open-telemetry/semantic-conventions-genai`` since, with no release yet). The three client
instruments are exposed under their Prometheus names (dots become underscores, the unit
``s`` becomes ``_seconds``, ``{token}`` adds nothing), their attributes as labels
(``gen_ai.operation.name`` as ``gen_ai_operation_name``, ...) and with the conventions'
explicit bucket boundaries:

* ``gen_ai.client.operation.duration``: ``gen_ai_client_operation_duration_seconds``;
* ``gen_ai.client.token.usage``: ``gen_ai_client_token_usage``;
* ``gen_ai.client.operation.time_to_first_chunk``:
  ``gen_ai_client_operation_time_to_first_chunk_seconds``.
"""

from __future__ import annotations

#: The OpenTelemetry semantic conventions release the ``gen_ai_*`` families follow.
SEMCONV_VERSION = "1.41.0"

#: The two sets of LLM families ``APPMETRICS_LLM_FAMILIES`` turns on: ``gemini`` (the
#: ``gemini_api_*`` families) and ``gen_ai`` (OpenTelemetry's ``gen_ai_*`` instruments).
LLM_FAMILIES = ("gemini", "gen_ai")
#: ``gen_ai_operation_name`` values: OpenTelemetry's well-known ``generate_content`` and
#: ``embeddings``, and ``count_tokens`` (google-genai's ``count_tokens``: no generation).
GEN_AI_OPERATIONS = ("generate_content", "embeddings", "count_tokens")
#: ``gen_ai_provider_name`` values: Gemini's Developer API, Vertex AI, or a Google endpoint
#: not known to be either.
GEN_AI_PROVIDERS = ("gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai")
#: Bucket boundaries of ``gen_ai.client.operation.duration`` and
#: ``gen_ai.client.operation.time_to_first_chunk``, in seconds.
GEN_AI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: Bucket boundaries of ``gen_ai.client.token.usage``, in tokens.
GEN_AI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
