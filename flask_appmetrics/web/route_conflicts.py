"""Our paths against the app's routes: a path both would serve is never silently shared.

Werkzeug serves the first rule added for a path: an app route registered before
``init_app`` hides ours, one registered after (a blueprint, in the usual factory order)
is hidden by ours, so the app's own ``/api/health`` (with its database check) or a
``/metrics`` it protects itself would silently stop being served. So:

* ``init_app`` refuses a path the app already routes for ``GET``
  (:class:`~flask_appmetrics.errors.RouteConflictError`);
* a route added later on one of our paths is reported once, at the first request, by a
  :class:`~flask_appmetrics.errors.RouteConflictWarning` and a log record naming both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from ..errors import RouteConflictError, RouteConflictWarning

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.routing import Rule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnRoute:
    """One path flask-appmetrics serves.

    :param key: the config key that sets the path (``APPMETRICS_HEALTH_PATH``).
    :param path: the URL rule.
    :param endpoint: our endpoint (``appmetrics_health.health``).
    """

    key: str
    path: str
    endpoint: str


def _serves_get(rule: Rule) -> bool:
    # Ours answer GET (and HEAD); an app rule on the same path for POST only shares the
    # path without hiding anything, so it is not a conflict.
    return rule.methods is None or "GET" in rule.methods


def conflicts(app: Flask, routes: tuple[OwnRoute, ...]) -> list[tuple[OwnRoute, Rule]]:
    """The app's rules on one of our paths (our own rules excluded)."""
    by_path = {route.path: route for route in routes}
    own = {route.endpoint for route in routes}
    found: list[tuple[OwnRoute, Rule]] = []
    for rule in app.url_map.iter_rules():
        route = by_path.get(rule.rule)
        if route is not None and rule.endpoint not in own and _serves_get(rule):
            found.append((route, rule))
    return found


def refuse_conflicts(app: Flask, routes: tuple[OwnRoute, ...]) -> None:
    """Raise :class:`RouteConflictError` if the app already routes one of our paths."""
    found = conflicts(app, routes)
    if found:
        route, rule = found[0]
        raise RouteConflictError(route.key, route.path, rule.endpoint)


def _served_by(app: Flask, path: str) -> str | None:
    """The endpoint werkzeug picks for ``GET path``, if it can be told without a request."""
    try:
        adapter = app.url_map.bind(app.config.get("SERVER_NAME") or "localhost")
        endpoint, _ = adapter.match(path, method="GET")
    except Exception:  # host matching, a redirect: say nothing rather than guess
        return None
    return str(endpoint)


def late_conflict_message(app: Flask, route: OwnRoute, rule: Rule) -> str:
    """What to tell the user about *rule*, added on *route*'s path after ``init_app``."""
    winner = _served_by(app, route.path)
    if winner == route.endpoint:
        outcome = "flask-appmetrics' view answers it and the app's view is never called"
    elif winner == rule.endpoint:
        outcome = "the app's view answers it and flask-appmetrics' view is never called"
    else:
        outcome = "only one of the two views can answer it"
    return (
        f"the app's endpoint {rule.endpoint!r} was routed at {route.path!r} after "
        f"init_app, where flask-appmetrics serves {route.endpoint!r} ({route.key}): "
        f"{outcome}. Set {route.key} to another path to move ours, or to None to turn "
        "ours off."
    )


class LateConflictCheck:
    """A ``before_request`` hook that looks for late conflicts once, then removes itself.

    Flask 2.3+ has no "before first request" hook; this one takes itself out of the
    app's hook list after its first run, so later requests do not pay for it.
    """

    def __init__(self, routes: tuple[OwnRoute, ...]) -> None:
        self._routes = routes
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            hooks = app.before_request_funcs.get(None)
            if hooks is not None:
                # A new list rather than remove(): Flask may be iterating the old one now.
                app.before_request_funcs[None] = [h for h in hooks if h is not self]
            for route, rule in conflicts(app, self._routes):
                self._report(late_conflict_message(app, route, rule))
        except Exception:
            # Never into the request: the check is a courtesy.
            logger.exception("flask-appmetrics could not check the app's routes")

    @staticmethod
    def _report(message: str) -> None:
        logger.warning("flask-appmetrics: %s", message)
        # Warnings turned into errors (-W error) must not fail a request of the host app:
        # the message is logged above either way.
        with contextlib.suppress(Warning):
            warnings.warn(message, RouteConflictWarning, stacklevel=2)
