"""pytest plugin that adds flask-appmetrics to a third-party app while its own suite runs.

Loaded with ``-p appmetrics_suite_plugin`` (this directory on ``PYTHONPATH``), before the
suite's conftest imports the app. ``APPMETRICS_SUITE_TARGET`` names the app:
``package:create_app`` (a factory: every app it makes is instrumented) or
``package:app`` (a module-level app). Each app gets a fresh registry and a WSGI
middleware of ours, outside everything else, that counts the requests the suite's test
client makes and serves them as a WSGI server does (iterate the body, close it).
At the end, ``APPMETRICS_SUITE_REPORT`` receives one JSON object per app: the requests we
counted and what the extension recorded.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics

_APPS: list[tuple[Flask, CollectorRegistry, list[int]]] = []


def _serve_like_a_server(wsgi_app: Callable[..., Iterable[bytes]], seen: list[int]) -> Any:
    def middleware(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen[0] += 1
        body = wsgi_app(environ, start_response)
        try:
            return list(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return middleware


def _instrument(app: Flask) -> Flask:
    registry = CollectorRegistry()
    FlaskMetrics(registry=registry).init_app(app)
    seen = [0]
    app.wsgi_app = _serve_like_a_server(app.wsgi_app, seen)  # type: ignore[method-assign]
    _APPS.append((app, registry, seen))
    return app


def _install(target: str) -> None:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, attribute)
    if isinstance(found, Flask):
        _instrument(found)
        return

    @functools.wraps(found)
    def factory(*args: Any, **kwargs: Any) -> Flask:
        return _instrument(found(*args, **kwargs))

    setattr(module, attribute, factory)


def _sum(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for family in registry.collect() for s in family.samples if s.name == name)


def _report() -> list[dict[str, Any]]:
    return [
        {
            "app": app.name,
            "requests_served": seen[0],
            "http_requests_total": _sum(registry, "http_requests_total"),
            "http_request_duration_seconds_count": _sum(
                registry, "http_request_duration_seconds_count"
            ),
            "http_requests_in_progress": _sum(registry, "http_requests_in_progress"),
            "internal_errors": _sum(registry, "flask_appmetrics_internal_errors_total"),
        }
        for app, registry, seen in _APPS
    ]


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("APPMETRICS_SUITE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(_report(), out, indent=1)


_install(os.environ["APPMETRICS_SUITE_TARGET"])
