"""Sentry error tracking, initialised once per process when a DSN is configured.

``init_app`` calls :func:`init_sentry` when ``APPMETRICS_SENTRY_DSN`` (or the ``SENTRY_DSN``
environment variable) is set. sentry-sdk is initialised with its Flask integration, the
configured environment and release, ``send_default_pii=False``, and a ``before_send`` that
runs :func:`scrub_event`: secrets, API keys, ``Authorization`` and cookie headers and prompt
text never leave the process. Unhandled view errors then reach Sentry (through the Flask
integration's ``got_request_exception`` receiver) and ``application_errors_total`` alike.

Sentry is process-global: the first app with a DSN initialises it, later apps reuse it, and
a Sentry the application initialised itself is left alone (logged), never replaced.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._settings import SentrySettings
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

logger = logging.getLogger("flask_appmetrics")

FILTERED = "[Filtered]"

#: Field names (case-insensitive, ``-`` and ``_`` alike) whose values are always replaced.
SCRUB_FIELDS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "dsn",
        "credentials",
        "private_key",
        "session",
        "csrf_token",
        # Prompt text (google-genai's and common LLM client parameter names).
        "prompt",
        "prompts",
        "contents",
        "parts",
        "system_instruction",
        "messages",
        "completion",
    }
)
#: Field-name fragments that mark a secret wherever they appear (``GEMINI_API_KEY``,
#: ``user_prompt``); names ending in ``token`` are secrets too (``auth_token``), but not
#: token counts (``total_tokens``).
_SCRUB_FRAGMENTS = ("secret", "password", "passwd", "api_key", "apikey", "prompt", "credential")

#: Secrets recognisable by their shape, replaced inside any string.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"AIza[0-9A-Za-z_\-]{35}"), FILTERED),  # Google API keys
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), FILTERED),  # OpenAI-style keys
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {FILTERED}"),
    (
        re.compile(r"(?i)([?&;](?:api[_-]?key|key|token|access_token|secret|password)=)[^&\s#]+"),
        rf"\1{FILTERED}",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+(?::[^/\s@]+)?@"), rf"\1{FILTERED}@"),
)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class Scrubber:
    """Replaces sensitive values anywhere in a Sentry event.

    :param fields: extra field names to scrub (``APPMETRICS_SENTRY_SCRUB_FIELDS``).
    :param secrets: literal secret values to remove from every string (the app's own
        ``APPMETRICS_AUTH_TOKEN``, say).
    """

    def __init__(self, fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self._fields = SCRUB_FIELDS | {_normalise(f) for f in fields}
        # Longest first, so a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def sensitive(self, name: str) -> bool:
        """Whether a field called *name* holds a value to scrub."""
        key = _normalise(name)
        return (
            key in self._fields or key.endswith("token") or any(f in key for f in _SCRUB_FRAGMENTS)
        )

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, FILTERED)
        for pattern, replacement in _SECRET_PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def __call__(self, value: Any) -> Any:
        """Return *value* scrubbed (dicts and lists are scrubbed in place too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            for key in list(value):
                if isinstance(key, str) and self.sensitive(key):
                    if value[key] not in (None, "", FILTERED):
                        value[key] = FILTERED
                else:
                    value[key] = self(value[key])
            return value
        if isinstance(value, list):
            for i, item in enumerate(value):
                # Headers arrive as [name, value] pairs in some payloads.
                if (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and self.sensitive(item[0])
                ):
                    value[i] = [item[0], FILTERED]
                else:
                    value[i] = self(item)
            return value
        if isinstance(value, tuple):
            return tuple(self(item) for item in value)
        return value


EventHook = Callable[["Event", "Hint"], "Event | None"]


def _chain(scrubber: Scrubber, user_hook: EventHook | None) -> EventHook:
    def before_send(event: Event, hint: Hint) -> Event | None:
        if user_hook is not None:
            result = user_hook(event, hint)
            if result is None:
                return None
            event = result
        # Last, so that nothing the app's own hook added escapes scrubbing.
        scrubbed: Event = scrubber(event)
        return scrubbed

    return before_send


def _no_pii() -> dict[str, Any]:
    """``send_default_pii=False``, said the way this sentry-sdk understands.

    sentry-sdk 2.x releases that have ``data_collection`` deprecate ``send_default_pii``
    (a ``DeprecationWarning`` on every init) and collect no PII when neither is given; older
    ones need ``send_default_pii=False`` (also their default). Either way no PII is sent,
    and passing ``data_collection`` ourselves would switch off Sentry's own scrubber.
    """
    from sentry_sdk.consts import DEFAULT_OPTIONS

    return {} if "data_collection" in DEFAULT_OPTIONS else {"send_default_pii": False}


_lock = threading.Lock()
_ours: object | None = None


def init_sentry(settings: SentrySettings, *, secrets: Iterable[str] = ()) -> bool:
    """Initialise sentry-sdk for this process unless it already is.

    :param settings: the app's Sentry settings (``settings.dsn`` must be set).
    :param secrets: literal values to scrub from every event.
    :returns: whether this call initialised Sentry.
    :raises ConfigurationError: sentry-sdk is missing or an option is refused.
    """
    global _ours  # noqa: PLW0603 - Sentry itself is one client per process
    if settings.dsn is None:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError as exc:
        raise ConfigurationError(
            "APPMETRICS_SENTRY_DSN",
            "is set but sentry-sdk is not installed: pip install 'flask-appmetrics[sentry]'",
        ) from exc
    options = dict(settings.options)  # validated by config: no dsn, pii, environment, release
    scrubber = Scrubber(settings.scrub_fields, secrets)
    with _lock:
        current = sentry_sdk.get_client()
        if _ours is not None and current is _ours:
            if current.dsn != settings.dsn:
                logger.warning(
                    "flask-appmetrics: Sentry is already initialised in this process with "
                    "another DSN; one process reports to one Sentry project, the first one"
                )
            return False
        if current.is_active():
            logger.info("Sentry was initialised by the application; flask-appmetrics leaves it")
            return False
        integrations = [FlaskIntegration(), *options.pop("integrations", ())]
        sentry_sdk.init(
            dsn=settings.dsn,
            environment=settings.environment,
            release=settings.release,
            **_no_pii(),
            integrations=integrations,
            before_send=_chain(scrubber, options.pop("before_send", None)),
            before_send_transaction=_chain(scrubber, options.pop("before_send_transaction", None)),
            **options,
        )
        _ours = sentry_sdk.get_client()
        if _ours.should_send_default_pii():  # pragma: no cover - a future SDK default
            raise ConfigurationError("APPMETRICS_SENTRY_OPTIONS", "Sentry would send PII")
    logger.info("Sentry error tracking initialized")
    return True
