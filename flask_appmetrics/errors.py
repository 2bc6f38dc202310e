"""Exceptions raised by flask-appmetrics.

Every one of them is raised at start (``init_app`` or a declaration), or in strict mode,
never from inside a request of the host app. :class:`RouteConflictWarning` is a warning,
issued (not raised) at the first request. :func:`count_internal_error` is the other side:
what the extension does with a failure of its own instead of raising it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("flask_appmetrics")


class AppMetricsError(Exception):
    """Base class of every error flask-appmetrics raises."""


class ConfigurationError(AppMetricsError, ValueError):
    """An ``APPMETRICS_*`` key has a value the extension cannot use.

    :param key: the configuration key, e.g. ``APPMETRICS_BUCKETS``.
    :param message: what is wrong with its value.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class MetricConflictError(AppMetricsError, ValueError):
    """A metric name is already registered with another type or other label names.

    Raised instead of prometheus_client's ``Duplicated timeseries`` error: it names the
    metric and both definitions so the user can decide which module should own it.
    """

    def __init__(self, name: str, existing: str, wanted: str) -> None:
        self.name = name
        self.existing = existing
        self.wanted = wanted
        super().__init__(
            f"metric {name!r} is already registered as {existing}, but flask-appmetrics "
            f"needs {wanted}. Rename or remove the other definition, or give "
            "FlaskMetrics its own registry=CollectorRegistry()."
        )


class AlreadyInitializedError(AppMetricsError, RuntimeError):
    """``init_app`` was called twice for the same Flask app."""


class RouteConflictError(ConfigurationError):
    """The app already routes a path flask-appmetrics would serve (``init_app``).

    :param key: the config key that moves ours, e.g. ``APPMETRICS_HEALTH_PATH``.
    :param path: the path both would serve.
    :param endpoint: the app's endpoint on that path.
    """

    def __init__(self, key: str, path: str, endpoint: str) -> None:
        self.path = path
        self.endpoint = endpoint
        super().__init__(
            key,
            f"{path!r} is already routed by the app's endpoint {endpoint!r}, which "
            f"flask-appmetrics would hide or be hidden by. Set {key} to another path to "
            "move ours, or to None to turn ours off.",
        )


class RouteConflictWarning(UserWarning):
    """A route added to the app after ``init_app`` uses a path flask-appmetrics serves."""


class UnknownMetricError(AppMetricsError, LookupError):
    """:meth:`FlaskMetrics.metric <flask_appmetrics.FlaskMetrics.metric>` was asked for a
    name that is not one of the extension's metric families."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            f"{name!r} is not a flask-appmetrics metric; declare your own metrics with "
            f"metrics.counter()/gauge()/histogram(). Known: {', '.join(known)}"
        )


class StrictInputError(Exception):
    """Bad input refused under ``APPMETRICS_STRICT``: meant for the caller of the helper or
    signal, whereas any other exception of a receiver is contained. Raised as one of the
    two subclasses, so callers catch ``TypeError``/``ValueError`` as before."""


class StrictTypeError(StrictInputError, TypeError):
    """A value of the wrong type, refused under ``APPMETRICS_STRICT``."""


class StrictValueError(StrictInputError, ValueError):
    """A value of the right type but out of range, refused under ``APPMETRICS_STRICT``."""


def count_internal_error(component: str, count: Callable[[str], object] | None) -> None:
    """Count one failure of *component* with *count* (a metric set's
    ``count_internal_error``, or ``None`` for nothing to count), after the caller logged
    the failure itself.

    A failure of the counter is logged and swallowed: the code that caught the first
    failure must stay unaffected by the second.
    """
    if count is None:
        return
    try:
        count(component)
    except Exception:  # pragma: no cover - the counter itself failed
        logger.exception("flask-appmetrics could not count an internal error")
