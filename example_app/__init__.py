"""The example backend: a Gemini-backed content service, monitored with flask-appmetrics.

``python -m example_app`` serves it on http://127.0.0.1:5000 (``--traffic`` adds a small
traffic generator so the metrics move); :func:`create_app` is its app factory.
"""

from .app import create_app, metrics

__all__ = ["create_app", "metrics"]
