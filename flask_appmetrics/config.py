"""``APPMETRICS_*`` configuration: key names, defaults and validation.

Each key is read once, in ``init_app``, with ``app.config.setdefault`` so that the
effective value is visible in ``app.config``; a bad value raises
:class:`~flask_appmetrics.errors.ConfigurationError` naming the key, at start rather than
on the first request.

Each concern has its own frozen settings class (in :mod:`flask_appmetrics.settings`)
and loader below; :class:`Settings` gathers them. Keys are listed in :data:`DEFAULTS` and
described in :data:`DESCRIPTIONS`, from which the configuration reference is generated.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import logging
import math
import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import config_strings as strings
from .errors import ConfigurationError
from .llm.conventions import LLM_FAMILIES
from .llm.pricing import DEFAULT_GEMINI_PRICES, parse_prices
from .llm.quota import DEFAULT_TIMEZONE, QuotaLimits
from .metrics.labels import DEFAULT_MAX_LABEL_LENGTH, MIN_MAX_LABEL_LENGTH
from .settings import (
    AUTH_HEALTH_MODES,
    AuthSettings,
    EndpointSettings,
    HealthSettings,
    HttpSettings,
    LlmSettings,
    RedisSettings,
    SentrySettings,
    Settings,
    SharedSettings,
    SloSettings,
    StatusSettings,
)
from .slo.objectives import CONFIG_KEY as SLOS_KEY
from .slo.objectives import from_config

logger = logging.getLogger("flask_appmetrics")

#: Prometheus client's default histogram buckets, in seconds.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

#: Every key the extension reads, with its default. Concerns add their keys here.
DEFAULTS: dict[str, Any] = {
    # -- endpoints ------------------------------------------------------------------
    "APPMETRICS_METRICS_PATH": "/metrics",
    "APPMETRICS_HEALTH_PATH": "/api/health",
    "APPMETRICS_LIVEZ_PATH": "/livez",
    "APPMETRICS_READYZ_PATH": "/readyz",
    # The HTML status page (status_page.py); None turns it off.
    "APPMETRICS_STATUS_PATH": "/status",
    "APPMETRICS_STATUS_REFRESH_SECONDS": 5.0,
    # -- HTTP instrumentation -------------------------------------------------------
    "APPMETRICS_BUCKETS": DEFAULT_BUCKETS,
    "APPMETRICS_EXCLUDE_PATHS": (),
    "APPMETRICS_MAX_ERROR_TYPES": 50,
    # -- behaviour ------------------------------------------------------------------
    "APPMETRICS_STRICT": False,
    # -- Gemini, quota and input-fed labels (see SharedSettings) ---------------------------
    # No endpoint or model of its own: an app shows the series of those it configures.
    "APPMETRICS_GEMINI_ENDPOINTS": (),
    "APPMETRICS_GEMINI_MODELS": (),
    "APPMETRICS_GEMINI_PRICES": DEFAULT_GEMINI_PRICES,
    # The endpoint label of an instrumented client's calls made outside any request.
    "APPMETRICS_GEMINI_DEFAULT_ENDPOINT": "<background>",
    # USD per day; None: no budget (spend today is still exported).
    "APPMETRICS_GEMINI_DAILY_BUDGET_USD": None,
    # Which LLM family sets are registered: "gemini" (gemini_api_*), "gen_ai" (OpenTelemetry).
    "APPMETRICS_LLM_FAMILIES": LLM_FAMILIES,
    "APPMETRICS_MAX_LABEL_VALUES": 20,
    "APPMETRICS_MAX_LABEL_LENGTH": DEFAULT_MAX_LABEL_LENGTH,
    "APPMETRICS_QUOTA_RPM": None,
    "APPMETRICS_QUOTA_TPM": None,
    "APPMETRICS_QUOTA_RPD": None,
    "APPMETRICS_QUOTA_TPD": None,
    "APPMETRICS_QUOTA_TIMEZONE": DEFAULT_TIMEZONE,
    # -- health (see HealthSettings for why these defaults) ------------------------------
    "APPMETRICS_HEALTH_LATENCY_WINDOW": 100,
    "APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": 300,
    "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 0.05,
    "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": 0.5,
    "APPMETRICS_HEALTH_MIN_REQUESTS": 20,
    "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": 5.0,
    "APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS": 0.5,
    "APPMETRICS_HEALTH_CHECK_CACHE_SECONDS": 5.0,
    "APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS": 1.0,
    # Seconds of draining on SIGTERM; the environment variable of the same name is the
    # default, as gunicorn's master (which cannot see app.config) reads it there.
    "APPMETRICS_DRAIN_SECONDS": 0.0,
    "APPMETRICS_USERS_WINDOW_SECONDS": 300,
    "APPMETRICS_USERS_MAX_TRACKED": 10_000,
    # -- production (see AuthSettings, SentrySettings, RedisSettings) -------------------
    "APPMETRICS_AUTH_TOKEN": None,
    "APPMETRICS_AUTH_USERNAME": None,
    "APPMETRICS_AUTH_PASSWORD": None,
    "APPMETRICS_AUTH_HEALTH": "details",
    "APPMETRICS_SENTRY_DSN": None,
    "APPMETRICS_SENTRY_ENVIRONMENT": None,
    "APPMETRICS_SENTRY_RELEASE": None,
    "APPMETRICS_SENTRY_OPTIONS": {},
    "APPMETRICS_SENTRY_SCRUB_FIELDS": (),
    "APPMETRICS_REDIS_URL": None,
    # "{app_name}" is the Flask app's name: replicas of one service share, others do not.
    "APPMETRICS_REDIS_PREFIX": "appmetrics:{app_name}",
    "APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS": 0.05,
    "APPMETRICS_REDIS_RETRY_SECONDS": 5.0,
    "APPMETRICS_REDIS_FLUSH_SECONDS": 1.0,
    # -- service level objectives (see slo/objectives.py) -----------------------------------
    # Objectives of this app, besides those declared with @metrics.slo: none by default.
    "APPMETRICS_SLOS": (),
    # The rolling period objectives are judged over; the SRE workbook's burn-rate table
    # is written for 30 days.
    "APPMETRICS_SLO_WINDOW_DAYS": 30,
}

#: One sentence per key of :data:`DEFAULTS`: what it does, in which unit. The documentation's
#: configuration reference is generated from these two tables (a test checks that they
#: have the same keys). Single backticks mark code (the docs' default role).
DESCRIPTIONS: dict[str, str] = {
    "APPMETRICS_METRICS_PATH": "Path of the Prometheus page; `None` turns it off.",
    "APPMETRICS_HEALTH_PATH": "Path of the JSON health endpoint; `None` turns it off.",
    "APPMETRICS_LIVEZ_PATH": (
        "Path of the liveness probe, 200 while the process serves; `None` turns it off."
    ),
    "APPMETRICS_READYZ_PATH": (
        "Path of the readiness probe, 503 while a critical health check fails; `None` turns it off."
    ),
    "APPMETRICS_STATUS_PATH": (
        "Path of the HTML status page (also served at the health path to browsers allowed "
        "to see details); `None` turns it off."
    ),
    "APPMETRICS_STATUS_REFRESH_SECONDS": (
        "How often the status page reloads its figures, in seconds (0.5 to 3600)."
    ),
    "APPMETRICS_BUCKETS": (
        "Upper bounds of the `http_request_duration_seconds` buckets, in seconds, "
        "strictly increasing; apps sharing a registry must agree on them."
    ),
    "APPMETRICS_EXCLUDE_PATHS": (
        "Paths whose requests are not recorded, with everything below them by whole "
        "segments (`/internal` covers `/internal/jobs`, not `/internalize`)."
    ),
    "APPMETRICS_MAX_ERROR_TYPES": (
        "Distinct `error_type` values of `application_errors_total` kept before further "
        "exception types are counted as `other`."
    ),
    "APPMETRICS_STRICT": (
        "Raise `TypeError` or `ValueError` on bad input to the helpers, signals and custom "
        "metrics instead of logging and dropping it (meant for tests)."
    ),
    "APPMETRICS_GEMINI_ENDPOINTS": (
        "Endpoint label values of the Gemini families whose series exist at 0 from the "
        "start and are always kept."
    ),
    "APPMETRICS_GEMINI_MODELS": (
        "Model label values of the Gemini families whose series exist at 0 from the start "
        "and are always kept."
    ),
    "APPMETRICS_GEMINI_PRICES": (
        "Prices in USD per million tokens by model-name prefix, "
        '`{"model": {"input": x, "output": y, "cached": z}}` with an optional '
        '`"long_context": {"threshold": tokens, "input": x, "output": y}` tier, for '
        "`gemini_api_cost_usd_total` and the daily spend (a model without a row is counted "
        "in `gemini_api_unpriced_calls_total`)."
    ),
    "APPMETRICS_GEMINI_DEFAULT_ENDPOINT": (
        "`endpoint` label of the calls an instrumented google-genai client makes outside any "
        "request (inside one, the request's URL rule)."
    ),
    "APPMETRICS_GEMINI_DAILY_BUDGET_USD": (
        "Daily LLM budget in USD, against the estimated spend since midnight in "
        "`APPMETRICS_QUOTA_TIMEZONE` (`gemini_api_budget_remaining_usd`); `None` for none."
    ),
    "APPMETRICS_LLM_FAMILIES": (
        "LLM family sets registered: `gemini` for the `gemini_api_*` families, `gen_ai` for "
        "OpenTelemetry's `gen_ai_*` instruments; leave one out to turn it off."
    ),
    "APPMETRICS_MAX_LABEL_VALUES": (
        "Distinct values a label fed from input (Gemini endpoint and model, cache operation "
        "and layer, breaker service) takes beyond the configured ones before the rest "
        "become `other`."
    ),
    "APPMETRICS_MAX_LABEL_LENGTH": (
        "Most UTF-8 bytes of a label value fed from input; a longer value becomes its first "
        "bytes, `~` and 8 hex digits of its hash (at least 16)."
    ),
    "APPMETRICS_QUOTA_RPM": "API requests allowed per minute; `None` means unlimited.",
    "APPMETRICS_QUOTA_TPM": "API tokens allowed per minute; `None` means unlimited.",
    "APPMETRICS_QUOTA_RPD": "API requests allowed per day; `None` means unlimited.",
    "APPMETRICS_QUOTA_TPD": "API tokens allowed per day; `None` means unlimited.",
    "APPMETRICS_QUOTA_TIMEZONE": (
        "IANA time zone whose midnight starts a new quota day (Gemini's quotas reset at "
        "midnight Pacific time)."
    ),
    "APPMETRICS_HEALTH_LATENCY_WINDOW": (
        "Number of recent request durations kept for the health average and p95."
    ),
    "APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": (
        "Span of the health error window (`recent_errors_5min`, the error ratio), in "
        "seconds (1 to 604800)."
    ),
    "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": (
        "Share of 5xx responses in the error window (0 to 1) from which the app is `degraded`."
    ),
    "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": (
        "Share of 5xx responses in the error window (0 to 1) from which the app is "
        "`unhealthy` and health answers 503."
    ),
    "APPMETRICS_HEALTH_MIN_REQUESTS": (
        "Requests the error window must hold before the error ratio can make the app "
        "`degraded` or `unhealthy` (`0` judges from the first request)."
    ),
    "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": (
        "The p95 of recent request durations, in seconds, above which the app is "
        "`degraded`; `None` turns the latency judgement off."
    ),
    "APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS": (
        "Time a health check may run before it fails, in seconds, for checks registered "
        "without a timeout of their own."
    ),
    "APPMETRICS_HEALTH_CHECK_CACHE_SECONDS": (
        "How long a passing check's result is reused, in seconds, by every probe, scrape "
        "and status page of the process (`0` runs checks on every probe), for checks "
        "registered without a time of their own."
    ),
    "APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS": (
        "How long a failing check's result is reused, in seconds: shorter, so that a "
        "recovery shows quickly."
    ),
    "APPMETRICS_DRAIN_SECONDS": (
        "On SIGTERM, keep serving this many seconds while `/readyz` answers 503, then stop "
        "as the server would (gunicorn's master with `flask_appmetrics.gunicorn`, or the "
        "development server); the environment variable of the same name is the default, "
        "else `0` (stop at once)."
    ),
    "APPMETRICS_USERS_WINDOW_SECONDS": (
        "How long a user counts in `concurrent_users` after their last request, in seconds."
    ),
    "APPMETRICS_USERS_MAX_TRACKED": (
        "Most distinct users tracked at once (each takes a fixed-size hash, about 1 MiB "
        "for 10,000)."
    ),
    "APPMETRICS_AUTH_TOKEN": (
        "Bearer token that `/metrics`, the status page and health details require "
        "(`Authorization: Bearer <token>`); `None` requires none."
    ),
    "APPMETRICS_AUTH_USERNAME": (
        "HTTP Basic user name accepted with `APPMETRICS_AUTH_PASSWORD`; `None` turns "
        "Basic auth off."
    ),
    "APPMETRICS_AUTH_PASSWORD": (
        "HTTP Basic password accepted with `APPMETRICS_AUTH_USERNAME`; `None` turns Basic auth off."
    ),
    "APPMETRICS_AUTH_HEALTH": (
        "What of health needs credentials: `details` (the summary stays public), `all` "
        "(`/api/health` and `/readyz` too) or `none`."
    ),
    "APPMETRICS_SENTRY_DSN": (
        "Sentry DSN to report errors to; `None` falls back to the `SENTRY_DSN` environment "
        'variable and `""` turns Sentry off.'
    ),
    "APPMETRICS_SENTRY_ENVIRONMENT": (
        "Sentry environment; `None` falls back to `SENTRY_ENVIRONMENT`, else `production`."
    ),
    "APPMETRICS_SENTRY_RELEASE": "Sentry release; `None` falls back to `SENTRY_RELEASE`.",
    "APPMETRICS_SENTRY_OPTIONS": (
        'More keyword arguments for `sentry_sdk.init`, such as `{"traces_sample_rate": 0.1}`.'
    ),
    "APPMETRICS_SENTRY_SCRUB_FIELDS": (
        "More field names whose values are removed from Sentry events, on top of the built-in list."
    ),
    "APPMETRICS_REDIS_URL": (
        "`redis://`, `rediss://` or `unix://` URL through which workers and hosts share "
        "the health error window, concurrent users and the quota; `None` keeps them in "
        "each process."
    ),
    "APPMETRICS_REDIS_PREFIX": (
        "Prefix of every Redis key; `{app_name}` in it becomes the Flask app's name, so "
        "replicas of one service share their windows and other services do not."
    ),
    "APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS": (
        "The most a Redis call may delay a request, in seconds (0.001 to 5)."
    ),
    "APPMETRICS_REDIS_RETRY_SECONDS": (
        "How long to use local windows after a Redis failure before trying Redis again, in seconds."
    ),
    "APPMETRICS_REDIS_FLUSH_SECONDS": (
        "How often each worker sends its batched health and user updates to Redis, in seconds."
    ),
    "APPMETRICS_SLOS": (
        "Service level objectives of the app besides those declared with `metrics.slo`: a "
        'list of mappings such as `{"name": "api", "blueprint": "api", "availability": '
        '0.999, "latency": ("300ms", 0.99)}` (`blueprint` or `endpoints` scope one, else '
        "it counts the whole app)."
    ),
    "APPMETRICS_SLO_WINDOW_DAYS": (
        "Rolling period, in days (7 to 366), over which every objective's error budget is "
        "counted and its burn-rate alert thresholds are scaled."
    ),
}


#: Every key the extension reads starts with this.
PREFIX = "APPMETRICS_"

#: Integers beyond this are no usable setting, and beyond float's range they make gauges
#: (quota limits) fail with OverflowError at every scrape.
_MAX_INTEGER = 2**53


class ConfigReader:
    """Reads typed values from a Flask config, writing back the defaults it used.

    A value given as a string (an environment variable copied into the config) is parsed
    where the string can mean one thing only (:mod:`flask_appmetrics.config_strings`), and
    the parsed value is written back, so that ``app.config`` holds the value in effect.
    """

    def __init__(self, config: MutableMapping[str, Any]) -> None:
        self._config = config

    def raw(self, key: str) -> Any:
        default = DEFAULTS[key]
        if isinstance(default, (dict, list, set)):
            # A copy, so that an app changing its value in place cannot change every app's.
            default = copy.copy(default)
        return self._config.setdefault(key, default)

    def default_from(self, key: str, read: Callable[[], Any]) -> None:
        """Default *key* to ``read()`` (the environment, say) rather than to
        :data:`DEFAULTS`, when the app did not set it."""
        if key not in self._config:
            self._config[key] = read()

    def parse(self, key: str, text: str, parse: Callable[[str], Any]) -> Any:
        """*text*, part of *key*'s value, parsed by *parse*.

        :raises ConfigurationError: *parse* refused it, naming *key* and the reason.
        """
        try:
            return parse(text)
        except ValueError as error:
            raise ConfigurationError(key, f"{error}, got {text!r}") from None

    def from_string(self, key: str, text: str, parse: Callable[[str], Any]) -> Any:
        """*key*'s value *text* parsed by *parse*, and written back to the config in its
        place (see :meth:`parse`)."""
        return self.store(key, self.parse(key, text, parse))

    def store(self, key: str, value: Any) -> Any:
        """Write *value*, parsed from what *key* was given, back to the config."""
        self._config[key] = value
        return value

    def absent(self, key: str) -> bool:
        """Whether *key*, one whose value may be ``None``, is ``None`` or says so as a
        string (``"none"``, ``"null"``; written back as ``None``)."""
        value = self.raw(key)
        if isinstance(value, str) and strings.is_none(value):
            value = self.store(key, None)
        return value is None

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if isinstance(value, str):
            value = self.from_string(key, value, strings.boolean)
        elif type(value) is int and value in (0, 1):
            # from_prefixed_env() reads "0" and "1" as JSON numbers.
            value = self.store(key, bool(value))
        if not isinstance(value, bool):
            raise ConfigurationError(key, f"expected True or False, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int = 0, maximum: int = _MAX_INTEGER) -> int:
        value = self.raw(key)
        if isinstance(value, str):
            value = self.from_string(key, value, strings.integer)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigurationError(key, f"must be at least {minimum}, got {value}")
        if value > maximum:
            raise ConfigurationError(key, f"must be at most {maximum}")
        return value

    def number(
        self, key: str, *, minimum: float = 0.0, maximum: float = math.inf, optional: bool = False
    ) -> float | None:
        if optional and self.absent(key):
            return None
        value = self.raw(key)
        if isinstance(value, str):
            value = self.from_string(key, value, strings.number)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(key, f"expected a number, got {value!r}")
        if isinstance(value, int) and abs(value) > _MAX_INTEGER:
            # math.isfinite() raises OverflowError for an int beyond float's range.
            raise ConfigurationError(
                key, f"must be a finite number between {minimum} and {maximum}"
            )
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise ConfigurationError(
                key, f"must be a finite number between {minimum} and {maximum}, got {value!r}"
            )
        return float(value)

    def text(self, key: str, *, optional: bool = False) -> str | None:
        value = self.raw(key)
        if value is None and optional:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # The usual way to get here: from_prefixed_env() read a numeric token as JSON.
            raise ConfigurationError(
                key,
                f"expected a string, got the number {value!r} (from_prefixed_env() parses "
                "values as JSON: quote a numeric string in the variable, '\"12345\"')",
            )
        if not isinstance(value, str) or not value:
            raise ConfigurationError(key, f"expected a non-empty string, got {value!r}")
        return value

    def path(self, key: str) -> str | None:
        if self.absent(key):
            return None
        value = self.text(key)
        if value is not None and not value.startswith("/"):
            raise ConfigurationError(key, f"must start with '/' (or be None), got {value!r}")
        if value is not None and ("<" in value or ">" in value):
            # A URL rule variable: werkzeug would refuse it, or pass it to our view.
            raise ConfigurationError(key, f"must be a plain path without '<' or '>', got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if isinstance(value, str):
            value = self.store(key, tuple(self.parse(key, value, strings.items)))
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ConfigurationError(key, f"expected a list of strings, got {value!r}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise ConfigurationError(key, f"expected non-empty strings, got {item!r}")
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key)
        if isinstance(value, str):
            value = self.from_string(key, value, strings.mapping)
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                key, f"expected a mapping (a dict, or a JSON object in a string), got {value!r}"
            )
        return value


def _buckets(reader: ConfigReader) -> tuple[float, ...]:
    key = "APPMETRICS_BUCKETS"
    value = reader.raw(key)
    parsed = isinstance(value, str)
    if parsed:
        value = reader.parse(key, value, strings.items)
    if isinstance(value, bytes) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(key, f"expected a non-empty list of numbers, got {value!r}")
    buckets: list[float] = []
    for given in value:
        item = given
        if isinstance(item, str):
            # "0.1,0.5,1" from the environment, or ["0.1", "0.5"]: each bound is a number.
            item = reader.parse(key, item, strings.number)
            parsed = True
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ConfigurationError(key, f"bucket bounds must be numbers, got {item!r}")
        try:
            bound = float(item)
        except OverflowError:  # an int beyond any float: not a duration
            raise ConfigurationError(key, f"bucket bound out of range: {item!r}") from None
        if math.isnan(bound):
            raise ConfigurationError(key, f"bucket bounds must be numbers, got {item!r}")
        buckets.append(bound)
    if any(b <= a for a, b in itertools.pairwise(buckets)):
        raise ConfigurationError(key, f"bucket bounds must be strictly increasing, got {value!r}")
    if parsed:
        reader.store(key, tuple(buckets))
    return tuple(b for b in buckets if b != math.inf)


def _credential(reader: ConfigReader, key: str, *, header_safe: bool = False) -> str | None:
    """A credential clients can actually send, or ``None``.

    A credential read from a secrets file usually ends with the file's newline: one final
    ``\n`` (or ``\r\n``) is dropped, with a note in the log, and the value in ``app.config``
    is left as given. Anything else that no client would send is refused at start, since such
    a value would turn away every correct client: other surrounding whitespace (clients and
    proxies trim it), control characters (invalid in a header), and, for the bearer token,
    non-ASCII characters (a WSGI server decodes the ``Authorization`` header as Latin-1, so a
    UTF-8 token never matches). HTTP Basic credentials may be non-ASCII: werkzeug decodes
    them as UTF-8, as RFC 7617 says.
    """
    value = reader.text(key, optional=True)
    if value is None:
        return None
    if value.endswith("\n"):
        value = value[:-2] if value.endswith("\r\n") else value[:-1]
        logger.info(
            "flask-appmetrics: %s ends with a newline (a secrets file's last line?); "
            "the newline is not part of the credential",
            key,
        )
    if not value:
        raise ConfigurationError(key, "is empty apart from a newline")
    if value != value.strip():
        raise ConfigurationError(
            key,
            "starts or ends with whitespace, which clients never send (they and proxies trim "
            "it), so every correct client would be refused; remove it",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigurationError(
            key, "contains control characters, which an HTTP header cannot carry"
        )
    if header_safe and not value.isascii():
        raise ConfigurationError(
            key,
            "contains non-ASCII characters: servers decode the Authorization header as "
            "Latin-1, so a client's UTF-8 token would never match; use ASCII "
            "(e.g. secrets.token_urlsafe())",
        )
    return value


def _auth(reader: ConfigReader) -> AuthSettings:
    username = _credential(reader, "APPMETRICS_AUTH_USERNAME")
    password = _credential(reader, "APPMETRICS_AUTH_PASSWORD")
    if username is not None and ":" in username:
        # HTTP Basic sends "user:password": the first colon ends the user name.
        raise ConfigurationError(
            "APPMETRICS_AUTH_USERNAME", "contains ':', which HTTP Basic cannot carry in a user"
        )
    if (username is None) != (password is None):
        raise ConfigurationError(
            "APPMETRICS_AUTH_PASSWORD" if password is None else "APPMETRICS_AUTH_USERNAME",
            "basic auth needs both APPMETRICS_AUTH_USERNAME and APPMETRICS_AUTH_PASSWORD",
        )
    health = reader.raw("APPMETRICS_AUTH_HEALTH")
    if health not in AUTH_HEALTH_MODES:
        raise ConfigurationError(
            "APPMETRICS_AUTH_HEALTH", f"expected one of {AUTH_HEALTH_MODES}, got {health!r}"
        )
    return AuthSettings(
        token=_credential(reader, "APPMETRICS_AUTH_TOKEN", header_safe=True),
        username=username,
        password=password,
        health=health,
    )


def _check_dsn(dsn: str) -> None:
    """Refuse a malformed DSN here: sentry_sdk.init would raise its own error later, after
    the app is half set up."""
    try:
        from sentry_sdk.utils import BadDsn, Dsn
    except ImportError:  # init_sentry reports the missing SDK
        return
    try:
        Dsn(dsn)
    except (BadDsn, ValueError) as exc:
        raise ConfigurationError("APPMETRICS_SENTRY_DSN", f"not a Sentry DSN: {exc}") from exc


def _sentry(reader: ConfigReader) -> SentrySettings:
    # SENTRY_* environment variables are Sentry's own convention; the APPMETRICS_ keys win.
    dsn = reader.raw("APPMETRICS_SENTRY_DSN")
    if dsn is None:
        dsn = os.environ.get("SENTRY_DSN") or None
    elif not isinstance(dsn, str):
        raise ConfigurationError("APPMETRICS_SENTRY_DSN", f"expected a string, got {dsn!r}")
    if dsn:
        _check_dsn(dsn)
    environment = reader.text("APPMETRICS_SENTRY_ENVIRONMENT", optional=True)
    release = reader.text("APPMETRICS_SENTRY_RELEASE", optional=True)
    options = reader.mapping("APPMETRICS_SENTRY_OPTIONS")
    if not all(isinstance(k, str) for k in options):
        raise ConfigurationError("APPMETRICS_SENTRY_OPTIONS", "keys must be sentry_sdk.init names")
    if options.get("send_default_pii"):
        raise ConfigurationError(
            "APPMETRICS_SENTRY_OPTIONS", "send_default_pii is always False in flask-appmetrics"
        )
    for forced in ("dsn", "environment", "release"):
        if forced in options:
            raise ConfigurationError(
                "APPMETRICS_SENTRY_OPTIONS",
                f"set {forced} with APPMETRICS_SENTRY_{forced.upper()}, not in the options",
            )
    return SentrySettings(
        dsn=dsn or None,
        environment=environment or os.environ.get("SENTRY_ENVIRONMENT") or "production",
        release=release or os.environ.get("SENTRY_RELEASE") or None,
        options=dict(options),
        scrub_fields=reader.strings("APPMETRICS_SENTRY_SCRUB_FIELDS"),
    )


def _redis(reader: ConfigReader) -> RedisSettings:
    url = reader.text("APPMETRICS_REDIS_URL", optional=True)
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            "APPMETRICS_REDIS_URL", f"expected a redis://, rediss:// or unix:// URL, got {url!r}"
        )
    prefix = reader.text("APPMETRICS_REDIS_PREFIX")
    assert prefix is not None
    timeout = reader.number("APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS", minimum=0.001, maximum=5.0)
    retry = reader.number("APPMETRICS_REDIS_RETRY_SECONDS", minimum=0.0, maximum=3600.0)
    flush = reader.number("APPMETRICS_REDIS_FLUSH_SECONDS", minimum=0.0, maximum=60.0)
    assert timeout is not None
    assert retry is not None
    assert flush is not None
    return RedisSettings(
        url=url, prefix=prefix, socket_timeout=timeout, retry_seconds=retry, flush_seconds=flush
    )


def _positive(reader: ConfigReader, key: str, *, maximum: float = math.inf) -> float:
    value = reader.number(key, maximum=maximum)
    if value is None or value <= 0.0:
        raise ConfigurationError(key, f"must be above 0, got {value!r}")
    return value


#: Bounds of the window spans, in seconds. Below a second a window holds almost nothing (a
#: denormal span gives a permanent 503); beyond a week its Redis keys and buckets stop
#: making sense for "recent" health.
_WINDOW_SECONDS = (1.0, 604_800.0)
#: Bounds of a duration a check or a request is judged by: a millisecond is below any real
#: check or request (a shorter limit would fail them all), an hour beyond any probe.
_DURATION_SECONDS = (0.001, 3600.0)


def _seconds(reader: ConfigReader, key: str, bounds: tuple[float, float]) -> float:
    value = reader.number(key, minimum=bounds[0], maximum=bounds[1])
    assert value is not None  # number() returns None only when optional
    return value


#: Bounds of the cache time of check results: an hour is beyond any use of a health check.
_CACHE_SECONDS = (0.0, 3600.0)
#: Bounds of the drain: Kubernetes' default grace period is 30 s; an hour is beyond any.
_DRAIN_SECONDS = (0.0, 3600.0)
DRAIN_KEY = "APPMETRICS_DRAIN_SECONDS"


def drain_seconds_from_environment(environ: Mapping[str, str] | None = None) -> float:
    """``APPMETRICS_DRAIN_SECONDS`` from the environment (0 when unset), as the gunicorn
    config module and ``init_app`` read it.

    :raises ConfigurationError: the variable is not a number of seconds within bounds.
    """
    raw = (os.environ if environ is None else environ).get(DRAIN_KEY, "").strip()
    if not raw:
        return 0.0
    try:
        value = strings.number(raw)
    except ValueError:
        raise ConfigurationError(
            DRAIN_KEY, f"(environment variable) expected a number of seconds, got {raw!r}"
        ) from None
    low, high = _DRAIN_SECONDS
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigurationError(
            DRAIN_KEY, f"(environment variable) must be between {low:g} and {high:g}, got {raw!r}"
        )
    return value


def _health(reader: ConfigReader) -> HealthSettings:
    degraded = _positive(reader, "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO", maximum=1.0)
    unhealthy = _positive(reader, "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO", maximum=1.0)
    if degraded > unhealthy:
        raise ConfigurationError(
            "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO",
            f"must not exceed APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO ({unhealthy}), "
            f"got {degraded}",
        )
    threshold_key = "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS"
    reader.default_from(DRAIN_KEY, drain_seconds_from_environment)
    return HealthSettings(
        latency_window=reader.integer("APPMETRICS_HEALTH_LATENCY_WINDOW", minimum=1),
        error_window_seconds=_seconds(
            reader, "APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS", _WINDOW_SECONDS
        ),
        degraded_error_ratio=degraded,
        unhealthy_error_ratio=unhealthy,
        latency_threshold_seconds=None
        if reader.absent(threshold_key)
        else _seconds(reader, threshold_key, _DURATION_SECONDS),
        check_timeout_seconds=_seconds(
            reader, "APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS", _DURATION_SECONDS
        ),
        users_window_seconds=_seconds(reader, "APPMETRICS_USERS_WINDOW_SECONDS", _WINDOW_SECONDS),
        users_max_tracked=reader.integer("APPMETRICS_USERS_MAX_TRACKED", minimum=1),
        min_requests=reader.integer("APPMETRICS_HEALTH_MIN_REQUESTS", minimum=0),
        check_cache_seconds=_seconds(
            reader, "APPMETRICS_HEALTH_CHECK_CACHE_SECONDS", _CACHE_SECONDS
        ),
        check_failure_cache_seconds=_seconds(
            reader, "APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS", _CACHE_SECONDS
        ),
        drain_seconds=_seconds(reader, DRAIN_KEY, _DRAIN_SECONDS),
    )


def _optional_limit(reader: ConfigReader, key: str) -> int | None:
    return None if reader.absent(key) else reader.integer(key, minimum=1)


def _prices(reader: ConfigReader) -> Any:
    # parse_prices checks the structure; a string can only be the table as JSON.
    key = "APPMETRICS_GEMINI_PRICES"
    value = reader.raw(key)
    return reader.from_string(key, value, strings.mapping) if isinstance(value, str) else value


def _shared(reader: ConfigReader) -> SharedSettings:
    zone_key = "APPMETRICS_QUOTA_TIMEZONE"
    zone = reader.text(zone_key)
    assert zone is not None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(zone_key, f"unknown time zone {zone!r}") from exc
    return SharedSettings(
        gemini_endpoints=reader.strings("APPMETRICS_GEMINI_ENDPOINTS"),
        gemini_models=reader.strings("APPMETRICS_GEMINI_MODELS"),
        gemini_prices=parse_prices("APPMETRICS_GEMINI_PRICES", _prices(reader)),
        max_label_values=reader.integer("APPMETRICS_MAX_LABEL_VALUES", minimum=1),
        max_label_length=reader.integer(
            "APPMETRICS_MAX_LABEL_LENGTH", minimum=MIN_MAX_LABEL_LENGTH
        ),
        quota_limits=QuotaLimits(
            rpm=_optional_limit(reader, "APPMETRICS_QUOTA_RPM"),
            tpm=_optional_limit(reader, "APPMETRICS_QUOTA_TPM"),
            rpd=_optional_limit(reader, "APPMETRICS_QUOTA_RPD"),
            tpd=_optional_limit(reader, "APPMETRICS_QUOTA_TPD"),
        ),
        quota_timezone=zone,
        gemini_daily_budget=reader.number(
            "APPMETRICS_GEMINI_DAILY_BUDGET_USD", maximum=1e12, optional=True
        ),
        llm_families=_llm_families(reader),
    )


def _llm_families(reader: ConfigReader) -> frozenset[str]:
    key = "APPMETRICS_LLM_FAMILIES"
    families = reader.strings(key)
    unknown = sorted(set(families) - set(LLM_FAMILIES))
    if unknown:
        raise ConfigurationError(
            key, f"unknown family set {unknown[0]!r}: expected some of {list(LLM_FAMILIES)}"
        )
    return frozenset(families)


_PATH_KEYS = (
    "APPMETRICS_METRICS_PATH",
    "APPMETRICS_HEALTH_PATH",
    "APPMETRICS_LIVEZ_PATH",
    "APPMETRICS_READYZ_PATH",
    "APPMETRICS_STATUS_PATH",
)


def _distinct_paths(reader: ConfigReader) -> None:
    # Two of our views on one path would both register, and Flask would serve the first.
    seen: dict[str, str] = {}
    for key in _PATH_KEYS:
        path = reader.path(key)
        if path is None:
            continue
        if path in seen:
            raise ConfigurationError(key, f"{path!r} is already the path of {seen[path]}")
        seen[path] = key


def _status(reader: ConfigReader) -> StatusSettings:
    refresh = reader.number("APPMETRICS_STATUS_REFRESH_SECONDS", minimum=0.5, maximum=3600.0)
    assert refresh is not None  # number() returns None only when optional
    return StatusSettings(path=reader.path("APPMETRICS_STATUS_PATH"), refresh_seconds=refresh)


#: Bounds of ``APPMETRICS_SLO_WINDOW_DAYS``: the slowest alert reads 3 days, which must be
#: well within the period; beyond a year no process or Prometheus keeps the history.
_SLO_DAYS = (7.0, 366.0)


def _slo(reader: ConfigReader) -> SloSettings:
    days = reader.number("APPMETRICS_SLO_WINDOW_DAYS", minimum=_SLO_DAYS[0], maximum=_SLO_DAYS[1])
    assert days is not None  # number() returns None only when optional
    # Whole minutes: the period is a Prometheus range ([30d], [10080m]) in the rules.
    period = round(days * 1440) * 60.0
    value = reader.raw(SLOS_KEY)
    if isinstance(value, str):  # from the environment: a JSON array of objects
        value = reader.store(SLOS_KEY, reader.parse(SLOS_KEY, value, strings.items))
    return SloSettings(declarations=from_config(value), period_seconds=period)


def _unknown_key(key: str) -> str:
    """The message for *key*, not one of ours: the closest real keys, if any is close."""
    # Compared without the prefix, which every key shares and which would make them all
    # look alike.
    names = [name.removeprefix(PREFIX) for name in DEFAULTS]
    close = difflib.get_close_matches(key.removeprefix(PREFIX), names, n=2, cutoff=0.6)
    if not close:
        return (
            "unknown flask-appmetrics setting (a typo?); the configuration reference lists the keys"
        )
    suggestion = " or ".join(PREFIX + name for name in close)
    return f"unknown flask-appmetrics setting; did you mean {suggestion}?"


def load_settings(config: MutableMapping[str, Any]) -> Settings:
    """Read, default and validate every ``APPMETRICS_*`` key of *config*."""
    reader = ConfigReader(config)
    known = set(DEFAULTS)
    unknown = sorted(k for k in config if k.startswith(PREFIX) and k not in known)
    if unknown:
        raise ConfigurationError(unknown[0], _unknown_key(unknown[0]))
    http = HttpSettings(
        buckets=_buckets(reader),
        exclude_paths=reader.strings("APPMETRICS_EXCLUDE_PATHS"),
        max_error_types=reader.integer("APPMETRICS_MAX_ERROR_TYPES", minimum=1),
    )
    endpoints = EndpointSettings(
        metrics_path=reader.path("APPMETRICS_METRICS_PATH"),
        health_path=reader.path("APPMETRICS_HEALTH_PATH"),
        livez_path=reader.path("APPMETRICS_LIVEZ_PATH"),
        readyz_path=reader.path("APPMETRICS_READYZ_PATH"),
    )
    _distinct_paths(reader)
    return Settings(
        http=http,
        auth=_auth(reader),
        sentry=_sentry(reader),
        redis=_redis(reader),
        endpoints=endpoints,
        strict=reader.boolean("APPMETRICS_STRICT"),
        health=_health(reader),
        shared=_shared(reader),
        status=_status(reader),
        slo=_slo(reader),
        llm=LlmSettings(default_endpoint=_label_text(reader, "APPMETRICS_GEMINI_DEFAULT_ENDPOINT")),
    )


def _label_text(reader: ConfigReader, key: str) -> str:
    value = reader.text(key)
    assert value is not None  # text() returns None only when optional
    return value
