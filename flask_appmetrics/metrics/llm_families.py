"""Families the domain metrics add to the catalog (issue 4): token breakdown, cost, quota
limits, breaker transitions and rejections, per-layer cache operations.

Kept beside :mod:`flask_appmetrics.metrics.catalog` rather than in it so the catalog stays one
table per concern; :data:`DOMAIN_SPECS` is spliced into ``CATALOG``.
"""

from __future__ import annotations

from .registration import MetricSpec

#: ``status`` values of ``gemini_api_calls_total``: ``cancelled`` is a stream its consumer
#: closed before the end (or a task cancelled mid-call); only the first two are created at 0.
GEMINI_STATUSES = ("success", "error", "cancelled")
#: ``token_type`` values of ``gemini_api_token_usage_total``.
TOKEN_TYPES = ("input", "output", "thoughts", "cached")
#: ``limit`` values of ``quota_limit`` and ``quota_exceeded_total``.
QUOTA_LIMITS = ("rpm", "tpm", "rpd", "tpd")
#: ``circuit_breaker_state`` encoding; also the ``state`` label of transitions.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

DOMAIN_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "counter",
        "gemini_api_token_usage_total",
        "Gemini API tokens by type: input (prompt, cached included), output, thoughts, "
        "cached (the part of input served from the context cache)",
        ("endpoint", "model", "token_type"),
    ),
    MetricSpec(
        "counter",
        "gemini_api_cost_usd_total",
        "Estimated Gemini API cost in USD, from APPMETRICS_GEMINI_PRICES",
        ("endpoint", "model"),
    ),
    MetricSpec(
        "gauge",
        "quota_limit",
        "Configured API quota limits (rpm, tpm, rpd, tpd); absent when unlimited",
        ("limit",),
        multiprocess_mode="max",
    ),
    MetricSpec(
        "counter",
        "quota_exceeded_total",
        "API usage records that went over a configured limit: requests over rpm/rpd, "
        "tokens over tpm/tpd",
        ("limit",),
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_transitions_total",
        "Circuit breaker state changes, by the state entered",
        ("service", "state"),
    ),
    MetricSpec(
        "counter",
        "circuit_breaker_rejected_calls_total",
        "Calls a circuit breaker refused while open",
        ("service",),
    ),
    MetricSpec(
        "counter",
        "cache_layer_operations_total",
        "Cache operations reported with a layer, by layer, operation and result",
        ("layer", "operation", "result"),
    ),
)
