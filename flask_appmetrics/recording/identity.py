"""Who the user behind a request is, for ``concurrent_users``.

Read at the end of each request that counts for health, without changing what the app
sends: no session is opened for the app, no user is loaded from the database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from typing import Any, cast

from flask import g
from flask.globals import request_ctx
from flask.sessions import NullSession, SecureCookieSession

#: Returns the identity of the current request's user, or ``None`` not to count it.
UserIdentity = Callable[[], "str | None"]


def default_user_identity() -> str | None:
    """The default identity of a request's user, for ``concurrent_users``.

    In order: the Flask-Login user (the one already loaded for this request, else the
    ``_user_id`` Flask-Login keeps in the session, so no user is loaded from the database
    just to be counted); a server-side session id (``session.sid``, as Flask-Session
    provides); the ``Authorization`` header (a bearer token or API key stands for one
    client's session); else the client address and User-Agent. Flask's default signed
    cookie is not used: its value changes each time the session is refreshed. Identities
    are hashed before they are stored.
    """
    return identity_of(cast("Any", request_ctx)._get_current_object())


#: Looked up on every request: a module global costs less than ``sys.modules``.
_modules = sys.modules
#: Flask's own session classes: they carry no server-side session id.
_PLAIN_SESSIONS = frozenset({SecureCookieSession, NullSession})


def identity_key(ctx: Any) -> Hashable | None:
    """:func:`identity_of` *ctx*, or a key :func:`identity_text` turns into it later.

    The request path's version: most requests carry no user (no Flask-Login, an empty
    session or none, no ``Authorization``) and are identified by client address and
    User-Agent. For those the key is the pair itself, made text (``client:...``) once per
    user when the request log is folded, instead of once per request here; any other
    request gets :func:`identity_of`'s text.
    """
    if "flask_login" not in _modules:
        opened = getattr(ctx, "_session", _NOT_LAZY)
        environ = ctx.request.environ
        if opened is None:
            # A session the app did not open (Flask >= 3.1 opens it lazily): without a
            # cookie there is nothing to read.
            userless = "HTTP_COOKIE" not in environ
        else:
            # Flask's own session, empty: no user id, no server-side session id.
            userless = type(opened) in _PLAIN_SESSIONS and not opened
        if userless and "HTTP_AUTHORIZATION" not in environ:
            return (environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT", ""))
    return identity_of(ctx)


def identity_text(key: Hashable) -> str:
    """The identity a key of :func:`identity_key` stands for (a text is its own)."""
    if isinstance(key, tuple):
        address, agent = key
        return f"client:{address}|{agent}"
    return str(key)


def identity_of(ctx: Any) -> str | None:
    """:func:`default_user_identity` for the request context *ctx*. Runs on every request,
    where each context-local proxy lookup costs most of a microsecond: the context is
    resolved once by the caller and the WSGI environ is read directly."""
    if "flask_login" in _modules:  # no Flask-Login, no logged-in user to look for
        user = g.get("_login_user")
        if user is not None and getattr(user, "is_authenticated", False):
            return f"user:{user.get_id()}"
    current_session = _session_of(ctx)
    if current_session is not None:
        # dict.get, not the session's own get: that marks the session accessed, and Flask
        # would add "Vary: Cookie" to the app's response because we looked.
        user_id = (
            dict.get(current_session, "_user_id")
            if isinstance(current_session, dict)
            else current_session.get("_user_id")
        )
        if user_id is not None:
            return f"user:{user_id}"
        sid = getattr(current_session, "sid", None)
        if isinstance(sid, str) and sid:
            return f"session:{sid}"
    environ = ctx.request.environ
    authorization = environ.get("HTTP_AUTHORIZATION")
    if authorization:
        return f"auth:{authorization}"
    return f"client:{environ.get('REMOTE_ADDR')}|{environ.get('HTTP_USER_AGENT', '')}"


_NOT_LAZY = object()


def _session_of(ctx: Any) -> Any:
    """The request's session as the app sees it, without changing what the app sends.

    Flask >= 3.1 opens the session only when the app touches it. Opening it for the app
    (``ctx.session``) would make Flask save it, and add ``Vary: Cookie``, to a response
    whose view never used it; so a session the app left closed is read into a private copy
    that is never saved, and only when the request carries a session cookie (without one
    there is nothing to read: no cost on the common path).
    """
    opened = getattr(ctx, "_session", _NOT_LAZY)
    if opened is _NOT_LAZY:  # Flask < 3.1 opened it when the request started
        return ctx.session
    if opened is not None:
        return opened
    app, current = ctx.app, ctx.request
    # The raw header first: parsing request.cookies costs a microsecond on every request.
    if "HTTP_COOKIE" not in current.environ or (
        app.config["SESSION_COOKIE_NAME"] not in current.cookies
    ):
        return None
    return app.session_interface.open_session(app, current)
