"""The ``flask appmetrics`` commands: check the configuration, write the objectives'
Prometheus rules, print an app's health, list the extension's routes."""

from .group import appmetrics

__all__ = ["appmetrics"]
