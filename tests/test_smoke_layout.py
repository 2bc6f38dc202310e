"""The package's public surface: what users import."""

from __future__ import annotations

import flask_appmetrics


def test_public_names_are_exported() -> None:
    for name in flask_appmetrics.__all__:
        assert hasattr(flask_appmetrics, name), name
    assert flask_appmetrics.FlaskMetrics.__module__ == "flask_appmetrics.extension"
