"""Views and blueprints left out of the measurements (``metrics.exclude``).

A request to an excluded view is in no HTTP family (``http_requests_total``, the duration
and in-progress families, ``application_errors_total``, the opt-in sizes and queue time)
and not in the health windows, like a request to an ``APPMETRICS_EXCLUDE_PATHS`` path.
Whether a route is excluded is decided the first time it is requested, and kept.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint

if TYPE_CHECKING:
    from flask import Flask

T = TypeVar("T")


class Exclusions:
    """The views, view classes and blueprints one extension leaves out, in every app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: set[Any] = set()
        self._blueprints: set[Blueprint] = set()
        self._blueprint_names: set[str] = set()

    def add(self, target: T) -> T:
        """Leave *target* out: a view function (or the function a decorator wraps, or a
        ``View`` class), a :class:`~flask.Blueprint`, or a blueprint's name.

        :raises TypeError: *target* is none of these.
        """
        with self._lock:
            if isinstance(target, Blueprint):
                self._blueprints.add(target)
            elif isinstance(target, str):
                if not target:
                    raise TypeError("exclude() needs a view, a blueprint or a blueprint name")
                self._blueprint_names.add(target)
            elif callable(target):
                self._views.add(target)
            else:
                raise TypeError(
                    f"exclude() takes a view function, a View class, a Blueprint or a "
                    f"blueprint name, not {type(target).__name__}"
                )
        return target

    def __bool__(self) -> bool:
        return bool(self._views or self._blueprints or self._blueprint_names)

    def excludes(self, app: Flask, endpoint: str) -> bool:
        """Whether requests to *endpoint* of *app* are left out."""
        view = app.view_functions.get(endpoint)
        seen = 0
        # Through decorators that keep the view (functools.wraps sets __wrapped__), and
        # from a View's as_view() function to its class.
        while view is not None and seen < 32:
            try:
                if view in self._views or getattr(view, "view_class", None) in self._views:
                    return True
            except TypeError:  # an unhashable callable: never added
                pass
            view = getattr(view, "__wrapped__", None)
            seen += 1
        # "parent.child.view": the blueprints "parent" and "parent.child" (nested).
        parts = endpoint.split(".")[:-1]
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in self._blueprint_names or app.blueprints.get(name) in self._blueprints:
                return True
        return False
