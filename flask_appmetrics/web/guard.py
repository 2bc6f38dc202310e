"""Who may read ``/metrics`` and the health details.

Two sources of authorisation, either of which lets a request through:

* credentials from config: ``APPMETRICS_AUTH_TOKEN`` (``Authorization: Bearer <token>``)
  and/or ``APPMETRICS_AUTH_USERNAME`` + ``APPMETRICS_AUTH_PASSWORD`` (HTTP Basic), compared
  with :func:`hmac.compare_digest` so timing reveals nothing about the secret;
* a decorator of the app's own, ``FlaskMetrics(auth=login_required)``: the extension wraps a
  probe view with it and treats the probe running as "authorised", so any decorator that
  either calls the view or returns/raises a refusal works unchanged (flask-jwt-extended's
  ``jwt_required()``, Flask-Login's ``login_required``, Flask-HTTPAuth's
  ``auth.login_required``). It runs at most once per request: the decision is kept on the
  request.

A refused request gets ``401`` with a ``WWW-Authenticate`` challenge per configured
scheme and no metric data. With only a decorator configured, its own refusal is the
answer: a response or redirect it returns is returned, an exception it raises
(``abort(401)``, flask-jwt-extended's ``NoAuthorizationError``) is raised again from the
view, so the app's own error handlers answer it exactly as on the app's own views.

Health (``APPMETRICS_AUTH_HEALTH``): with ``details`` (the default) the health summary
(:data:`SUMMARY_KEYS`) stays public for load balancers and uptime checks, and everything
else (check errors, reasons, breakers, the status page) needs authorisation; ``all``
protects ``/api/health`` and ``/readyz`` entirely; ``none`` leaves health public.
``/livez`` is always public.

:class:`Guard` is the one place that applies these rules: every view asks it, by
:data:`Resource`, whether the current request may proceed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import Request, Response, current_app, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from ..settings import AuthSettings

logger = logging.getLogger(__name__)

#: ``FlaskMetrics(auth=...)``: a view decorator (``login_required`` and the like).
AuthDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Keys of a health body anyone may read when details are protected (the summary of
#: ``/api/health``, plus the IETF format's ``description``).
SUMMARY_KEYS = frozenset(
    {"status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users", "description"}
)

#: What a view serves, as the guard sees it: ``"metrics"`` (``/metrics``), ``"health"``
#: (``/api/health``; its details are filtered by :meth:`Guard.visible`), ``"readyz"``, and
#: ``"details"`` (the status page, which shows nothing but details).
Resource = Literal["metrics", "health", "readyz", "details"]

_REALM = "flask-appmetrics"
_MIN_TOKEN_LENGTH = 16


#: Attributes of the current request object holding the decorator's decision. On the
#: request rather than ``flask.g``: an app context pushed around several requests (as
#: tests do) shares one ``g``, while each request has its own request object.
_DECISION_ATTR = "_flask_appmetrics_auth_decision"
_PROBE_RAN_ATTR = "_flask_appmetrics_auth_probe_ran"


class _Allowed:
    """Returned by the probe view: the user's decorator let the request through."""


_ALLOWED = _Allowed()


def _current_request() -> Request:
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    return req


def _session_state() -> tuple[Any, dict[str, Any], bool] | None:
    """The request's session, a copy of its items and its ``modified`` flag, read
    without touching it (``dict.copy`` bypasses the session's own item access, which
    would mark it accessed and add ``Vary: Cookie``)."""
    session = getattr(request_ctx._get_current_object(), "session", None)  # type: ignore[attr-defined]
    if not isinstance(session, dict):
        return None
    return session, dict.copy(session), bool(getattr(session, "modified", False))


def _restore_session(state: tuple[Any, dict[str, Any], bool]) -> None:
    """Undo what a refusing decorator wrote into the session (Flask-Login flashes its
    login message), when its refusal is not the answer the client gets. ``accessed``
    stays as the decorator left it: the answer does depend on the session (a logged-in
    client sees details), so ``Vary: Cookie`` is right."""
    session, items, modified = state
    try:
        dict.clear(session)
        dict.update(session, items)
        session.modified = modified
    except Exception:  # a session class of the app's own that refuses: keep it as it is
        logger.debug("flask-appmetrics could not restore the session", exc_info=True)


def _probe() -> _Allowed:
    # Marked on the request rather than judged by the return value: a decorator may
    # post-process what the view returns (make_response, headers) and still have let the
    # request through.
    setattr(_current_request(), _PROBE_RAN_ATTR, True)
    return _ALLOWED


@dataclass(frozen=True)
class Decision:
    """What the ``auth=`` decorator made of the current request.

    :param allowed: it called the view.
    :param returned: what it returned instead of calling the view (a redirect, a 401
        response), when it did not raise.
    :param raised: the exception it raised instead (``abort(401)``, an extension's own
        ``NoAuthorizationError``), to be raised again for the app's error handlers.
    """

    allowed: bool
    returned: Any = None
    raised: Exception | None = None
    #: The session as it was before the decorator ran (see :func:`_session_state`).
    session_before: tuple[Any, dict[str, Any], bool] | None = None


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
        self._decorator_name = (
            None
            if decorator is None
            else str(getattr(decorator, "__qualname__", None) or type(decorator).__name__)
        )
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

    def decision(self) -> Decision:
        """The ``auth=`` decorator's decision on the current request, made once per request.

        Whatever the decorator does is a decision, never a failure of ours: it calls the
        view (allowed), returns something else (refused with that), or raises (refused with
        that exception, whatever its type: flask-jwt-extended raises its own).
        """
        assert self._probe is not None
        req = _current_request()
        known = getattr(req, _DECISION_ATTR, None)
        if isinstance(known, Decision):
            return known
        setattr(req, _PROBE_RAN_ATTR, False)
        before = _session_state()
        try:
            result = self._probe()
        except Exception as exc:
            # A refusal, unless the probe had run: then the decorator failed while
            # post-processing the view's result, after letting the request through.
            decided = Decision(
                allowed=bool(getattr(req, _PROBE_RAN_ATTR, False)),
                raised=exc,
                session_before=before,
            )
        else:
            ran = bool(getattr(req, _PROBE_RAN_ATTR, False)) or result is _ALLOWED
            decided = Decision(allowed=ran, returned=None if ran else result, session_before=before)
        setattr(req, _DECISION_ATTR, decided)
        return decided

    def authorized(self) -> bool:
        """Whether the current request may read protected data."""
        if not self.enabled or self._credentials_valid():
            return True
        return self._probe is not None and self.decision().allowed

    def protects(self, resource: Resource) -> bool:
        """Whether *resource* needs authorisation under ``APPMETRICS_AUTH_HEALTH``."""
        if resource == "metrics":
            return True
        if resource == "details":
            return self.settings.health != "none"
        return self.settings.health == "all"

    def credentials(self) -> tuple[str, ...]:
        """What lets a request through, in words (``flask appmetrics routes``)."""
        found = []
        if self.settings.token is not None:
            found.append("a bearer token (APPMETRICS_AUTH_TOKEN)")
        if self.settings.username is not None:
            found.append("basic auth (APPMETRICS_AUTH_USERNAME)")
        if self._decorator_name is not None:
            found.append(f"the auth= decorator {self._decorator_name}")
        return tuple(found)

    def describe(self, resource: Resource | Literal["livez"]) -> str:
        """Who may read *resource*, in one line (``flask appmetrics routes``)."""
        if resource == "livez":
            return "public (always)"
        if not self.enabled:
            return "public (no APPMETRICS_AUTH_* credentials, no auth= decorator)"
        who = " or ".join(self.credentials())
        if resource in ("metrics", "details") and self.protects(resource):
            return f"needs {who}"
        if resource in ("health", "readyz") and self.protects(resource):
            return f"needs {who} (APPMETRICS_AUTH_HEALTH='all')"
        if resource != "metrics" and self.protects("details"):
            shown = "summary" if resource == "health" else "status"
            return f"{shown} public; details need {who}"
        return "public (APPMETRICS_AUTH_HEALTH='none')"

    def refusal(
        self, resource: Resource, on_failure: Callable[[], Response] | None = None
    ) -> Response | None:
        """``None`` if the current request may read *resource*, else the response refusing it.

        The ``auth=`` decorator's own refusal raised as an exception (``abort(401)``, a
        redirect, flask-jwt-extended's ``NoAuthorizationError``: any exception it raised)
        is raised on to Flask, which answers it through the app's error handlers as on any
        other view: it is an answer, not a failure of ours, and a load balancer must not
        read it as one. Anything else that fails is ``on_failure()`` (the health views'
        503); without *on_failure* it propagates.
        """
        if not self.protects(resource):
            return None
        try:
            return self.deny()
        except Exception as exc:
            if on_failure is None or self._raised_by_decorator(exc):
                raise
            return on_failure()

    def sees_details(self) -> bool:
        """Whether the current request may read health details (checks, reasons,
        breakers, the status page) rather than the summary only.

        The client of a public probe gets the summary, not the decorator's refusal, so
        what the refusing decorator wrote into the session (Flask-Login's flashed login
        message) is undone: an anonymous probe gets no session cookie from it.
        """
        if not self.protects("details") or self.authorized():
            return True
        known = getattr(_current_request(), _DECISION_ATTR, None)
        if isinstance(known, Decision) and known.session_before is not None:
            _restore_session(known.session_before)
        return False

    def visible(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """*body* as the current request may see it: the summary only, unless authorised."""
        if self.sees_details():
            return dict(body)
        return {k: v for k, v in body.items() if k in SUMMARY_KEYS}

    def deny(self) -> Response | None:
        """``None`` if the current request may proceed, else the response refusing it.

        With only a decorator configured, an exception it raised is raised again from
        here, so Flask hands it to the app's own error handlers.
        """
        if not self.enabled or self._credentials_valid():
            return None
        if self._probe is not None:
            decided = self.decision()
            if decided.allowed:
                return None
            if not self.settings.configured:
                if decided.raised is not None:
                    raise decided.raised
                return self._as_response(decided.returned)
        return self.challenge()

    def _raised_by_decorator(self, exc: BaseException) -> bool:
        """Whether *exc* is the ``auth=`` decorator's refusal of the current request (to be
        answered by the app's error handlers) rather than a failure of ours."""
        if isinstance(exc, HTTPException):
            return True
        known = getattr(_current_request(), _DECISION_ATTR, None)
        return isinstance(known, Decision) and known.raised is exc

    def _as_response(self, returned: Any) -> Response:
        try:
            return current_app.make_response(returned)
        except Exception:
            # Not a response Flask can make (None, say): still a refusal, never a 500.
            logger.warning(
                "flask-appmetrics: the auth decorator refused with %s, which is not a "
                "response; answering 401",
                type(returned).__name__,
            )
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
