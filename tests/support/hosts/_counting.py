"""Count how often an auth decorator's check runs, per app and per request."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, request

View = Callable[..., Any]
Decorator = Callable[[View], View]

KEY = "host_auth_runs"


def counted(decorator: Decorator) -> Decorator:
    """*decorator*, noting the path each time the check it adds runs.

    ``app.extensions["host_auth_runs"]`` lists one path per run: a test compares it with
    the requests it made.
    """

    def apply(view: View) -> View:
        guarded = decorator(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_app.extensions.setdefault(KEY, []).append(request.path)
            return guarded(*args, **kwargs)

        return wrapper

    return apply


def runs(app: Any) -> list[str]:
    found: list[str] = app.extensions.setdefault(KEY, [])
    return found
