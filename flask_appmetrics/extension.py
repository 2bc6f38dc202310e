"""The :class:`FlaskMetrics` extension: wires the catalog, hooks and views for each app."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY

from ._multiprocess import check_setup as check_multiprocess_setup
from ._state import EXTENSION_KEY, AppState, set_latest, state_of
from .auth import AuthDecorator, Guard
from .catalog import metric_set_for
from .config import load_settings
from .errors import AlreadyInitializedError
from .instrumentation import RequestInstrumentation
from .views import METRICS_BLUEPRINT, metrics_blueprint

if TYPE_CHECKING:
    from flask import Flask
    from prometheus_client import CollectorRegistry

logger = logging.getLogger("flask_appmetrics")


class FlaskMetrics:
    """Prometheus metrics and health for Flask apps.

    ::

        metrics = FlaskMetrics()

        def create_app():
            app = Flask(__name__)
            metrics.init_app(app)
            return app

    The metric families are registered once per registry, whatever the number of apps
    (an app factory called per test, say); every app that calls :meth:`init_app` is
    instrumented. Per-app state lives in ``app.extensions["appmetrics"]``.

    :param app: an app to initialise now, or ``None`` to call :meth:`init_app` later.
    :param registry: where the metrics live; ``None`` means ``prometheus_client.REGISTRY``
        so that the process collector and the app's own metrics show on the same page.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        registry: CollectorRegistry | None = None,
        auth: AuthDecorator | None = None,
    ):
        self._registry = registry
        self._auth = auth
        if app is not None:
            self.init_app(app)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry this extension records into."""
        return self._registry if self._registry is not None else REGISTRY

    def init_app(self, app: Flask) -> None:
        """Instrument *app*, register the metric catalog (once per registry), add the views.

        :raises AlreadyInitializedError: *app* was initialised before.
        :raises ConfigurationError: an ``APPMETRICS_*`` key has a bad value.
        :raises MetricConflictError: a metric name is taken by an incompatible collector.
        """
        if EXTENSION_KEY in app.extensions:
            raise AlreadyInitializedError(
                f"flask-appmetrics is already initialised on app {app.name!r}. "
                "Call init_app once per app; use the same FlaskMetrics instance or "
                "current_app.extensions['appmetrics'] to reach it."
            )
        settings = load_settings(app.config)
        # Before any metric is touched: a half-configured multiprocess mode is refused here.
        multiprocess_dir = check_multiprocess_setup()
        metric_set = metric_set_for(self.registry, settings.http.buckets)
        instrumentation = RequestInstrumentation(
            metric_set,
            settings.http,
            own_blueprints=frozenset({METRICS_BLUEPRINT}),
            on_internal_error=metric_set.count_internal_error,
        )
        state = AppState(
            app_name=app.name,
            settings=settings,
            registry=self.registry,
            metric_set=metric_set,
            instrumentation=instrumentation,
            own_blueprints={METRICS_BLUEPRINT},
            multiprocess_dir=multiprocess_dir,
            auth=Guard(settings.auth, self._auth),
        )
        instrumentation.install(app)
        if settings.endpoints.metrics_path is not None:
            app.register_blueprint(metrics_blueprint(settings.endpoints.metrics_path))
        app.extensions[EXTENSION_KEY] = state
        set_latest(state)
        logger.info("Prometheus metrics initialized successfully")
        if settings.endpoints.metrics_path is not None:
            logger.info("Metrics available at %s endpoint", settings.endpoints.metrics_path)

    @staticmethod
    def state(app: Flask) -> AppState | None:
        """The per-app state of *app*, or ``None`` if it was not initialised."""
        return state_of(app)
