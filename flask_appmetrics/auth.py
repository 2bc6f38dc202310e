"""Who may read ``/metrics`` and the health details.

Two sources of authorisation, either of which lets a request through:

* credentials from config: ``APPMETRICS_AUTH_TOKEN`` (``Authorization: Bearer <token>``)
  and/or ``APPMETRICS_AUTH_USERNAME`` + ``APPMETRICS_AUTH_PASSWORD`` (HTTP Basic), compared
  with :func:`hmac.compare_digest` so timing reveals nothing about the secret;
* a decorator of the app's own, ``FlaskMetrics(auth=login_required)``: the extension wraps a
  probe view with it and treats the probe running as "authorised", so any decorator that
  either calls the view or returns/raises a refusal works unchanged.

A refused request gets ``401`` with a ``WWW-Authenticate`` challenge per configured
scheme and no metric data. (With only a decorator configured, its own refusal, a redirect
to a login page say, is returned instead.)

Health (``APPMETRICS_AUTH_HEALTH``): with ``details`` (the default) the health summary (the
seed's four keys) stays public for load balancers and uptime checks, and everything else
(check errors, reasons, breakers) needs authorisation; ``all`` protects ``/api/health``
and ``/readyz`` entirely; ``none`` leaves health public. ``/livez`` is always public.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

from ._settings import AuthSettings
from ._state import state_of

logger = logging.getLogger(__name__)

#: ``FlaskMetrics(auth=...)``: a view decorator (``login_required`` and the like).
AuthDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Keys of a health body anyone may read when details are protected (the seed's summary,
#: plus the IETF format's ``description``).
SUMMARY_KEYS = frozenset(
    {"status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users", "description"}
)

_REALM = "flask-appmetrics"
_MIN_TOKEN_LENGTH = 16


class _Allowed:
    """Returned by the probe view: the user's decorator let the request through."""


_ALLOWED = _Allowed()


def _probe() -> _Allowed:
    return _ALLOWED


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Guard:
    """Decides whether the current request may read protected data, for one app.

    :param settings: the app's auth settings.
    :param decorator: the ``auth=`` decorator of :class:`~flask_appmetrics.FlaskMetrics`.
    """

    def __init__(self, settings: AuthSettings, decorator: AuthDecorator | None = None) -> None:
        self.settings = settings
        self._probe = decorator(_probe) if decorator is not None else None
        if settings.token is not None and len(settings.token) < _MIN_TOKEN_LENGTH:
            logger.warning(
                "APPMETRICS_AUTH_TOKEN is shorter than %d characters: easy to guess",
                _MIN_TOKEN_LENGTH,
            )

    @property
    def enabled(self) -> bool:
        """Whether anything is protected at all."""
        return self.settings.configured or self._probe is not None

    def _credentials_valid(self) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        token = self.settings.token
        if token is not None and scheme == "bearer":
            return _equal(value.strip(), token)
        username, password = self.settings.username, self.settings.password
        if username is not None and password is not None and scheme == "basic":
            given = request.authorization
            if given is None or given.username is None or given.password is None:
                return False
            # Both comparisons always run: no early exit on a wrong user name.
            user_ok = _equal(given.username, username)
            password_ok = _equal(given.password, password)
            return user_ok and password_ok
        return False

    def _run_decorator(self) -> tuple[bool, Any]:
        """Run the user's decorator around the probe: (allowed, its refusal)."""
        assert self._probe is not None
        try:
            result = self._probe()
        except HTTPException as exc:
            return False, exc
        return result is _ALLOWED, result

    def authorized(self) -> bool:
        """Whether the current request may read protected data."""
        if not self.enabled or self._credentials_valid():
            return True
        return self._probe is not None and self._run_decorator()[0]

    def deny(self) -> Response | None:
        """``None`` if the current request may proceed, else the response refusing it."""
        if not self.enabled or self._credentials_valid():
            return None
        if self._probe is not None:
            allowed, refusal = self._run_decorator()
            if allowed:
                return None
            if not self.settings.configured:
                if isinstance(refusal, HTTPException):
                    raise refusal
                return current_app.make_response(refusal)
        return self.challenge()

    def challenge(self) -> Response:
        """``401`` with one ``WWW-Authenticate`` header per configured scheme."""
        response = Response("401 Unauthorized\n", status=401, mimetype="text/plain")
        if self.settings.token is not None:
            response.headers.add("WWW-Authenticate", f'Bearer realm="{_REALM}"')
        if self.settings.username is not None:
            response.headers.add("WWW-Authenticate", f'Basic realm="{_REALM}", charset="UTF-8"')
        response.headers["Cache-Control"] = "no-store"
        return response


def _guard() -> Guard | None:
    state = state_of(current_app)
    return state.auth if state is not None else None


def metrics_denied() -> Response | None:
    """For the ``/metrics`` view: the refusal of the current request, or ``None``."""
    guard = _guard()
    return guard.deny() if guard is not None else None


def health_denied() -> Response | None:
    """For ``/api/health`` and ``/readyz``: a refusal when ``APPMETRICS_AUTH_HEALTH="all"``."""
    guard = _guard()
    if guard is None or guard.settings.health != "all":
        return None
    return guard.deny()


def health_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """*body* as the current request may see it: the summary only, unless authorised."""
    guard = _guard()
    if guard is None or guard.settings.health == "none" or guard.authorized():
        return dict(body)
    return {k: v for k, v in body.items() if k in SUMMARY_KEYS}
