"""Shared fixtures: a fresh registry, extension and app per test (STYLE.md).

``app`` is the fixture pytest-flask builds ``client`` from. Tests that need the default
``prometheus_client.REGISTRY`` use :func:`default_registry_app` and compare deltas, since
that registry lives for the whole process (and we never reset it: users cannot either).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.apps import AppFactory, add_test_routes


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry, so values start at zero in every test."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> FlaskMetrics:
    return FlaskMetrics(registry=registry)


@pytest.fixture
def app_factory(metrics: FlaskMetrics) -> AppFactory:
    """``make(config=None, *, ext=metrics, routes=True)``: a new app, initialised."""

    def make(
        config: dict[str, Any] | None = None,
        *,
        ext: FlaskMetrics | None = None,
        routes: bool = True,
    ) -> Flask:
        app = Flask("test_app")
        app.config.update(config or {})
        if routes:
            add_test_routes(app)
        (ext or metrics).init_app(app)
        return app

    return make


@pytest.fixture
def app(app_factory: AppFactory) -> Flask:
    return app_factory()


@pytest.fixture(autouse=True)
def _log_every_refusal() -> None:
    """Refusals of bad input are logged once per call site per minute; every test starts
    afresh, so that one asserting a log line sees it whatever ran before."""
    from flask_appmetrics.recording.validation import reset_log_limits

    reset_log_limits()
