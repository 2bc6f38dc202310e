"""Shared fixtures: a fresh registry, extension and app per test (STYLE.md).

``app`` is the fixture pytest-flask builds ``client`` from. Tests that need the default
``prometheus_client.REGISTRY`` use :func:`default_registry_app` and compare deltas, since
that registry lives for the whole process (and we never reset it: users cannot either).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _no_drain_left_behind() -> Iterator[None]:
    """Draining is per process: a test that starts one, or that lets ``init_app`` take
    SIGTERM (``APPMETRICS_DRAIN_SECONDS``), must not leave it to the next test or to
    pytest's own SIGTERM."""
    yield
    from flask_appmetrics.health.draining import PROCESS_DRAIN, SIGTERM_DRAIN

    SIGTERM_DRAIN.uninstall()
    PROCESS_DRAIN.clear()


#: Set by CI (``.ci/run``): a test skipped for a missing tool or extra fails the run there,
#: so nothing that should run for real goes untested. Elsewhere such tests skip cleanly.
REQUIRE_ALL = "TESTS_REQUIRE_SYSTEM_TOOLS"


def _skips(config: pytest.Config) -> list[Any]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if os.environ.get(REQUIRE_ALL) == "1" and _skips(config):
        terminalreporter.write_line(
            f"{REQUIRE_ALL}=1: {len(_skips(config))} skipped test(s) count as failures "
            "(see the skip reasons above)",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(REQUIRE_ALL) == "1" and _skips(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
