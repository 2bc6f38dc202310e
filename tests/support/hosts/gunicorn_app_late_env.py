"""An app module that sets PROMETHEUS_MULTIPROC_DIR after prometheus_client was imported
(the classic mistake); flask-appmetrics must refuse to start instead of serving one
worker's numbers."""

from __future__ import annotations

import os

import prometheus_client  # noqa: F401 - imported first on purpose

os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["TEST_LATE_MULTIPROC_DIR"]

from tests.support.hosts.gunicorn_app import app

__all__ = ["app"]
