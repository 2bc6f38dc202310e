"""Sentry error tracking, initialised once per process when a DSN is configured.

``init_app`` calls :func:`init_sentry` when ``APPMETRICS_SENTRY_DSN`` (or the ``SENTRY_DSN``
environment variable) is set. sentry-sdk is initialised with its Flask integration, the
configured environment and release and ``send_default_pii=False``. Secrets are removed in two
passes, so that secrets, API keys, ``Authorization`` and cookie headers and prompt text never
leave the process:

* by field name, with sentry-sdk's own :class:`~sentry_sdk.scrubber.EventScrubber` (its
  denylist extended with :data:`SCRUB_FIELDS` and ``APPMETRICS_SENTRY_SCRUB_FIELDS``,
  recursive), and again by :class:`Scrubber`, which also matches name fragments
  (``GEMINI_API_KEY``, ``auth_token``) and ``-`` for ``_``;
* by value, with :class:`Scrubber` on every string: the app's own secrets given literally
  (auth token and password, the password of ``APPMETRICS_REDIS_URL``, ``SECRET_KEY``),
  credentials in URLs of any scheme (``redis://:pw@host``, ``postgresql://app:pw@db``),
  ``name=value`` pairs whose name is sensitive (the first query parameter included),
  quoted ``"name": "value"`` pairs, and API keys recognisable by their shape.

The value pass runs on events and transactions (``before_send``,
``before_send_transaction``), on breadcrumbs as they are recorded (``before_breadcrumb``),
and on Sentry logs and metrics (``before_send_log``, ``before_send_metric``, where the
installed sentry-sdk has them), each after the app's own hook of the same name. Unhandled
view errors reach Sentry (through the Flask integration's ``got_request_exception``
receiver) and ``application_errors_total`` alike.

Sentry is process-global: the first app with a DSN initialises it, later apps reuse it, and
a Sentry the application initialised itself is left alone (logged), never replaced.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigurationError
from ..settings import SentrySettings, Settings

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

#: API keys recognisable by their shape, replaced whole inside any string.
_KEY_SHAPES = re.compile(
    "|".join(
        (
            r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
            r"\bsk-[A-Za-z0-9_\-]{16,}",  # OpenAI/Anthropic-style keys
            r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"\bgh[pousr]_[A-Za-z0-9]{36,}",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\beyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]+",  # JWTs
        )
    )
)
#: What every shape above starts with: a cheap search that spares most strings the full pass.
_KEY_MARKS = re.compile(r"AIza|sk-|k_live_|k_test_|gh[pousr]_|github_pat_|xox|AKIA|ASIA|eyJ")
#: ``Bearer <credentials>`` and ``Basic <credentials>``: the scheme is kept.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
#: Credentials in a URL of any scheme (redis://:pw@h, postgresql://u:pw@h, amqp://u:pw@h):
#: everything between "://" and the last "@" of the authority. Both parts are bounded so that
#: a long hostile string costs linear time, not quadratic.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^/\s?#'\"<>]{0,512}@")
#: ``name=value`` (query strings, first parameter included; form bodies; libpq DSNs); the
#: value is replaced when the name is sensitive.
_ASSIGNMENT = re.compile(r"(?<![\w.\-%])([A-Za-z_][\w.\-]*)=(['\"]?)([^&\s#;'\"]+)")
#: ``"name": "value"`` and ``'name': 'value'`` (JSON or a dict's repr inside a message).
_QUOTED_PAIR = re.compile(r"""(['"])([A-Za-z_][\w.\-]*)\1(\s*:\s*)(['"])((?:(?!\4).)*)\4""")


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
        # Each secret also as it appears percent-encoded in a URL, and decoded from one.
        variants = {v for s in secrets for v in (s, quote(s, safe=""), unquote(s))}
        # Longest first, so a secret containing another is removed whole.
        self._secrets = sorted({s for s in variants if len(s) >= 4}, key=len, reverse=True)

    @property
    def fields(self) -> frozenset[str]:
        """Field names scrubbed whatever their value (normalised: lower case, ``_``)."""
        return self._fields

    def sensitive(self, name: str) -> bool:
        """Whether a field called *name* holds a value to scrub."""
        key = _normalise(name)
        return (
            key in self._fields or key.endswith("token") or any(f in key for f in _SCRUB_FRAGMENTS)
        )

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        if len(value) < 8:  # shorter than any pattern below could match
            return value
        if _KEY_MARKS.search(value):
            value = _KEY_SHAPES.sub(FILTERED, value)
        value = _AUTH_SCHEME.sub(rf"\1 {FILTERED}", value)
        # Each pass below only where its mark is present: most strings have none.
        if "://" in value:
            value = _URL_CREDENTIALS.sub(rf"\1{FILTERED}@", value)
        if "=" in value:
            value = _ASSIGNMENT.sub(self._assignment, value)
        if ":" in value and ("'" in value or '"' in value):
            value = _QUOTED_PAIR.sub(self._quoted_pair, value)
        return value

    def _assignment(self, match: re.Match[str]) -> str:
        name, mark, secret = match.group(1, 2, 3)
        if not self.sensitive(name) or secret == FILTERED:
            return match.group(0)
        return f"{name}={mark}{FILTERED}"

    def _quoted_pair(self, match: re.Match[str]) -> str:
        mark, name, colon, value_mark, secret = match.group(1, 2, 3, 4, 5)
        if not self.sensitive(name) or secret in ("", FILTERED):
            return match.group(0)
        return f"{mark}{name}{mark}{colon}{value_mark}{FILTERED}{value_mark}"

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


#: A sentry-sdk hook: an event, breadcrumb, log or metric (a dict) and its hint, returning
#: it (changed or not) or ``None`` to drop it.
Hook = Callable[[Any, Any], Any]


def _chain(
    scrubber: Scrubber, user_hook: Hook | None, scrub: Callable[[Any], Any] | None = None
) -> Hook:
    scrub = scrub or scrubber

    def scrubbed(item: Any, hint: Any) -> Any:
        if user_hook is not None:
            result = user_hook(item, hint)
            if result is None:
                return None
            item = result
        # Last, so that nothing the app's own hook added escapes scrubbing.
        return scrub(item)

    return scrubbed


_PARAMETER = "sentry.message.parameter."


def _log_scrubber(scrubber: Scrubber) -> Callable[[Any], Any]:
    """Scrubs a Sentry log. A log keeps the arguments of its message apart
    (``sentry.message.parameter.N``): an argument the value pass removed from the message
    (``"password=%s"``, a secret unrecognisable on its own) is removed from there too."""

    def scrub(log: Any) -> Any:
        if not isinstance(log, dict):
            return scrubber(log)
        body = log.get("body")
        log = scrubber(log)
        attributes = log.get("attributes")
        new_body = log.get("body")
        if (
            isinstance(body, str)
            and isinstance(new_body, str)
            and new_body != body
            and isinstance(attributes, dict)
        ):
            for name, value in attributes.items():
                if (
                    isinstance(name, str)
                    and name.startswith(_PARAMETER)
                    and isinstance(value, str)
                    and value not in new_body
                ):
                    attributes[name] = FILTERED
        return log

    return scrub


def _event_scrubber(scrubber: Scrubber) -> Any:
    """sentry-sdk's own scrubber by field name, its denylist extended with ours."""
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    # sentry-sdk compares lower-cased names exactly: give both spellings of each of ours.
    ours = {n for f in scrubber.fields for n in (f, f.replace("_", "-"))}
    return EventScrubber(denylist=[*DEFAULT_DENYLIST, *sorted(ours)], recursive=True)


def _hooks(scrubber: Scrubber, options: dict[str, Any]) -> dict[str, Any]:
    """Every scrubbing hook for ``sentry_sdk.init``, each after the app's own (taken out of
    *options*): events, transactions and breadcrumbs always, logs and metrics where this
    sentry-sdk has them (top-level options, or ``_experiments`` in older 2.x releases)."""
    from sentry_sdk.consts import DEFAULT_OPTIONS

    hooks: dict[str, Any] = {
        name: _chain(scrubber, options.pop(name, None))
        for name in ("before_send", "before_send_transaction", "before_breadcrumb")
    }
    experiments = dict(options.pop("_experiments", None) or {})
    for name in ("before_send_log", "before_send_metric"):
        scrub = _log_scrubber(scrubber) if name == "before_send_log" else None
        if name in DEFAULT_OPTIONS:
            user_hook = options.pop(name, None) or experiments.pop(name, None)
            hooks[name] = _chain(scrubber, user_hook, scrub)
        else:
            experiments[name] = _chain(scrubber, experiments.get(name), scrub)
    if experiments:
        hooks["_experiments"] = experiments
    if options.get("event_scrubber") is None:
        options.pop("event_scrubber", None)
        hooks["event_scrubber"] = _event_scrubber(scrubber)
    return hooks


def _no_pii() -> dict[str, Any]:
    """``send_default_pii=False``, said the way this sentry-sdk understands.

    sentry-sdk 2.x releases that have ``data_collection`` deprecate ``send_default_pii``
    (a ``DeprecationWarning`` on every init) and collect no PII when neither is given; older
    ones need ``send_default_pii=False`` (also their default). Either way no PII is sent,
    and passing ``data_collection`` ourselves would switch off Sentry's own scrubber.
    """
    from sentry_sdk.consts import DEFAULT_OPTIONS

    return {} if "data_collection" in DEFAULT_OPTIONS else {"send_default_pii": False}


def app_secrets(settings: Settings, secret_key: object = None) -> list[str]:
    """The app's own secrets, scrubbed literally wherever they appear: the auth token and
    password, the password of ``APPMETRICS_REDIS_URL`` and the app's ``SECRET_KEY``."""
    found = [settings.auth.token, settings.auth.password]
    if settings.redis.url is not None:
        found.append(urlsplit(settings.redis.url).password)  # percent-encoded or not: both
    if isinstance(secret_key, bytes):
        secret_key = secret_key.decode("utf-8", "replace")
    if isinstance(secret_key, str):
        found.append(secret_key)
    return [s for s in found if s]


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
        hooks = _hooks(scrubber, options)
        sentry_sdk.init(
            dsn=settings.dsn,
            environment=settings.environment,
            release=settings.release,
            **_no_pii(),
            integrations=integrations,
            **hooks,
            **options,
        )
        _ours = sentry_sdk.get_client()
        if _ours.should_send_default_pii():  # pragma: no cover - a future SDK default
            raise ConfigurationError("APPMETRICS_SENTRY_OPTIONS", "Sentry would send PII")
    logger.info("Sentry error tracking initialized")
    return True
