"""The app factory of the example backend: a content service, monitored with flask-appmetrics.

Uses only flask-appmetrics' public API. Everything per app (cache, breaker, LLM client,
quota guard) is built in :func:`create_app`, so the factory runs any number of times (one
app per test, say) on the same registry or on fresh ones.
"""

from __future__ import annotations

import logging
from typing import Any

import pybreaker
from flask import Flask, current_app
from flask_caching import Cache

from flask_appmetrics import FlaskMetrics, QuotaLimits
from flask_appmetrics.integrations.caching import instrument_cache
from flask_appmetrics.integrations.pybreaker import monitor_breaker

from . import business, settings
from .llm import ContentBlocked, GeminiGenerator, TextGenerator, offline_generator
from .quota import QuotaGuard
from .routes import SERVICE_KEY, api
from .service import LLM_SERVICE, ContentService

logger = logging.getLogger("example_app")

#: The extension of the example, on the default ``prometheus_client`` registry (where code
#: that creates metrics at module level puts them).
metrics = FlaskMetrics()

#: The endpoints that call the LLM: their Gemini series exist at 0 from the start.
LLM_ENDPOINTS = (
    "/api/generate",
    "/api/subtopics",
    "/api/explanations",
    "/api/explanations/stream",
    "/api/images",
)

#: flask-appmetrics settings this app chooses (an app's own config still wins): Gemini's
#: free-tier-like quota limits, so the quota gauges and alerts have something to show; and
#: the service's objectives: the API answers without a 5xx 99.5% of the time, and the main
#: endpoint, which waits on two generations, within 2.5 s 95% of the time (2.5 s is a
#: bucket of the default histogram). ops/prometheus/rules/flask_appmetrics.slo.yml holds
#: the rules `flask --app example_app appmetrics rules` writes from them.
APPMETRICS_DEFAULTS: dict[str, Any] = {
    "APPMETRICS_GEMINI_ENDPOINTS": LLM_ENDPOINTS,
    "APPMETRICS_QUOTA_RPM": 60,
    "APPMETRICS_QUOTA_TPM": 1_000_000,
    "APPMETRICS_QUOTA_RPD": 1_500,
    "APPMETRICS_SLOS": (
        {"name": "api", "blueprint": "api", "availability": 0.995},
        {"name": "generate", "endpoints": ("api.generate",), "latency": ("2.5s", 0.95)},
    ),
}


def create_app(
    config: dict[str, Any] | None = None, *, extension: FlaskMetrics | None = None
) -> Flask:
    """Build the example backend.

    :param config: overrides of ``app.config`` (``EXAMPLE_*``, ``APPMETRICS_*``, ``CACHE_*``).
    :param extension: the :class:`~flask_appmetrics.FlaskMetrics` to initialise the app
        with; default :data:`metrics` (the default registry). Tests pass one with a fresh
        ``CollectorRegistry``.
    """
    ext = extension if extension is not None else metrics
    app = Flask("example_app")
    app.config.update(config or {})
    options = settings.load(app.config)
    settings.appmetrics_from_environment(app.config)
    logger.info("All required environment variables validated")

    app.config.setdefault("APPMETRICS_GEMINI_MODELS", (options.model,))
    for key, value in APPMETRICS_DEFAULTS.items():
        app.config.setdefault(key, value)
    if options.redis_url is not None:
        app.config.setdefault("CACHE_TYPE", "RedisCache")
        app.config.setdefault("CACHE_REDIS_URL", options.redis_url)
    else:
        app.config.setdefault("CACHE_TYPE", "SimpleCache")
    app.config.setdefault("CACHE_DEFAULT_TIMEOUT", options.cache_seconds)

    ext.init_app(app)

    cache = Cache()
    cache.init_app(app)
    layer = instrument_cache(cache, app)
    logger.info("Cache: %s (layer %r)", app.config["CACHE_TYPE"], layer)

    breaker = pybreaker.CircuitBreaker(
        fail_max=options.breaker_fail_max,
        reset_timeout=options.breaker_reset_seconds,
        name=LLM_SERVICE,
        # A blocked answer is the API working: it must not open the breaker.
        exclude=[ContentBlocked],
    )
    monitor_breaker(breaker, app=app)

    generator = _generator(options)
    limits = QuotaLimits(
        rpm=app.config["APPMETRICS_QUOTA_RPM"],
        tpm=app.config["APPMETRICS_QUOTA_TPM"],
        rpd=app.config["APPMETRICS_QUOTA_RPD"],
        tpd=app.config["APPMETRICS_QUOTA_TPD"],
    )
    app.extensions[SERVICE_KEY] = ContentService(
        generator,
        cache,
        breaker,
        QuotaGuard(limits),
        business.declare(ext),
        cache_seconds=options.cache_seconds,
    )
    # Extension-wide checks, so registering again (one app per test) replaces them.
    ext.add_health_check("cache", _cache_check, critical=False)
    app.register_blueprint(api)
    return app


def _generator(options: settings.ExampleSettings) -> TextGenerator:
    if options.llm == "gemini":
        assert options.api_key is not None  # settings.load refuses "gemini" without a key
        logger.info("LLM: Gemini API, model %s", options.model)
        return GeminiGenerator(options.api_key, options.model, base_url=options.gemini_base_url)
    generator = offline_generator(
        options.model, failure_rate=options.failure_rate, base_delay=options.latency_seconds
    )
    logger.info(
        "LLM: offline Gemini API stand-in at %s, model %s (set GEMINI_API_KEY to call Gemini)",
        generator.base_url,
        options.model,
    )
    return generator


def _cache_check() -> bool:
    """The app's cache accepts a write (a write, not a read: reads are counted as hits or
    misses, and probes must not move the hit ratio)."""
    service: ContentService = current_app.extensions[SERVICE_KEY]
    return bool(service.cache.set("example_app:health", 1, timeout=10))
