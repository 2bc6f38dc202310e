"""The :class:`FlaskMetrics` extension: wires the catalog, hooks and views for each app."""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, TypeVar

from flask import Blueprint

from .app_state import EXTENSION_KEY, AppState, current_state, set_latest, state_of, strict_now
from .cli import appmetrics as appmetrics_commands
from .config import DEFAULT_BUCKETS, load_settings
from .errors import AlreadyInitializedError, AppMetricsError, ConfigurationError
from .health.checks import CheckFunc, CheckRegistry, F
from .health.draining import DEFAULT_REASON, PROCESS_DRAIN, SIGTERM_DRAIN, Drain
from .health_wiring import build_monitor
from .integrations.redis.windows import shared_windows
from .integrations.sentry import app_secrets, init_sentry
from .metrics.cache_layers import CacheLayersMixin
from .metrics.custom_mixin import CustomMetricsMixin
from .metrics.multiprocess.setup import check_setup as check_multiprocess_setup
from .metrics.registry_state import registry_state
from .recording.exclusions import Exclusions
from .recording.identity import UserIdentity
from .recording.receivers import install as install_receivers
from .recording.request_hooks import RequestInstrumentation
from .signals import app_initialized
from .slo.objectives import Declaration, Scope, declare, threshold_problem
from .slo_wiring import build_tracker, refuse_unmeasurable
from .web.guard import AuthDecorator, Guard
from .web.health_views import HEALTH_BLUEPRINT, health_blueprint
from .web.metrics_view import METRICS_BLUEPRINT, metrics_blueprint
from .web.route_conflicts import LateConflictCheck, OwnRoute, refuse_conflicts
from .web.status_page import STATUS_BLUEPRINT, status_blueprint, status_page

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flask import Flask
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from .llm.quota import QuotaCounter
    from .settings import Settings
    from .slo.tracker import SloTracker

logger = logging.getLogger("flask_appmetrics")

T = TypeVar("T")
#: What :meth:`FlaskMetrics.slo` decorates: a view function or a blueprint.
Target = TypeVar("Target")


class FlaskMetrics(CustomMetricsMixin, CacheLayersMixin):
    """Prometheus metrics and health for Flask apps.

    ::

        metrics = FlaskMetrics()

        def create_app():
            app = Flask(__name__)
            metrics.init_app(app)
            return app

    The metric families are registered once per registry, whatever the number of apps
    (an app factory called per test, say); every app that calls :meth:`init_app` is
    instrumented. Per-app state lives in ``app.extensions["appmetrics"]``. In tests, give
    each app a registry of its own (``metrics.init_app(app, registry=CollectorRegistry())``):
    its values, quota and custom metrics then start afresh.

    :param app: an app to initialise now, or ``None`` to call :meth:`init_app` later.
    :param registry: where the metrics live; ``None`` means ``prometheus_client.REGISTRY``
        so that the process collector and the app's own metrics show on the same page.
        :meth:`init_app` may give an app another one.
    :param auth: a view decorator of the app's own (``login_required``,
        ``jwt_required()``) that decides who may read ``/metrics`` and the health details,
        besides the ``APPMETRICS_AUTH_*`` credentials.
    :param user_identity: returns who the current request's user is, for
        ``concurrent_users`` (``None`` leaves the request uncounted); by default
        :func:`~flask_appmetrics.default_user_identity`.
    :param quota: where the ``quota_*`` gauges count API usage (a
        :class:`~flask_appmetrics.QuotaCounter`); ``None`` is an in-process counter per
        registry whose day ends at midnight ``APPMETRICS_QUOTA_TIMEZONE``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        registry: CollectorRegistry | None = None,
        auth: AuthDecorator | None = None,
        user_identity: UserIdentity | None = None,
        quota: QuotaCounter | None = None,
    ):
        self._registry = registry
        self._auth = auth
        self._quota = quota
        # Extension-wide on purpose: checks apply to every app this instance initialises.
        self._checks = CheckRegistry()
        # Extension-wide too, like the checks: objectives declared on views apply to every
        # app that routes them. The apps' trackers are told when one is added.
        self._slo: list[Declaration] = []
        self._trackers: weakref.WeakSet[SloTracker] = weakref.WeakSet()
        self._user_identity = user_identity
        # Extension-wide too: views and blueprints are left out in every app.
        self._exclusions = Exclusions()
        self._app_registries = weakref.WeakSet()
        self._declared = {}
        self._cache_layers = {}
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        registry: CollectorRegistry | None = None,
        quota: QuotaCounter | None = None,
    ) -> None:
        """Instrument *app*, register the metric catalog (once per registry), add the views.

        :param registry: the registry of this app, when not the extension's
            (:attr:`registry`): the catalog, the quota gauges and every custom metric
            declared through this extension are declared there too, and calls record
            there while this app is the one recording (in its context, or the most
            recently initialised app outside any). A fresh one per test starts every value
            at zero; apps sharing a registry must agree on the settings that shape its
            series.
        :param quota: where this app counts API usage, when not the extension's (a
            :class:`~flask_appmetrics.QuotaCounter`); like the constructor's, it counts
            for every app on the registry.
        :raises AlreadyInitializedError: *app* was initialised before.
        :raises ConfigurationError: an ``APPMETRICS_*`` key has a bad value.
        :raises RouteConflictError: the app already routes one of our paths (a
            :class:`ConfigurationError` naming the ``APPMETRICS_*_PATH`` key that moves ours).
        :raises MetricConflictError: a metric name is taken by an incompatible collector.
        """
        if EXTENSION_KEY in app.extensions:
            raise AlreadyInitializedError(
                f"flask-appmetrics is already initialised on app {app.name!r}. "
                "Call init_app once per app; use the same FlaskMetrics instance or "
                "current_app.extensions['appmetrics'] to reach it."
            )
        if getattr(app, "_got_first_request", False):
            # Flask refuses new request hooks then: fail before anything is half done.
            # Flask private API (``_got_first_request``): the flag Flask's own setup-method
            # check reads; no public accessor says whether the app has served a request.
            raise AppMetricsError(
                f"init_app was called after app {app.name!r} served its first request; "
                "call it while the app is being set up (in the app factory)."
            )
        settings = load_settings(app.config)
        # A latency objective off the histogram's buckets cannot be measured: refused here
        # (those declared later are refused as they are declared).
        refuse_unmeasurable((*self._slo, *settings.slo.declarations), settings.http.buckets)
        # Before anything is installed: a path the app already routes is refused here.
        routes = _own_routes(settings)
        refuse_conflicts(app, routes)
        # Before any metric is touched: a half-configured multiprocess mode is refused here.
        multiprocess_dir = check_multiprocess_setup()
        if registry is None:
            registry = self.registry
        own_registry = registry is not self.registry
        # Before opening anything (a Redis link): settings other than those of a live app
        # on this registry are refused here.
        shared_state = registry_state(registry)
        shared_state.strict = strict_now
        metric_set = shared_state.metric_set_for(settings.http.buckets, settings.shared)
        if own_registry:
            # The app's own registry shows what this extension declared, as its own does.
            self._declare_in(registry)
            self._layers_in(registry)
        # Redis-backed windows (APPMETRICS_REDIS_URL), shared by every worker and host.
        shared = shared_windows(
            settings,
            app_name=app.name,
            secret=app.config.get("SECRET_KEY"),
            on_error=metric_set.count_internal_error,
        )
        if quota is None:
            quota = self._quota or (shared.quota if shared is not None else None)
        series = shared_state.shared_series(
            app, settings.shared, quota, llm=shared.llm if shared is not None else None
        )
        own_blueprints = frozenset({METRICS_BLUEPRINT, HEALTH_BLUEPRINT, STATUS_BLUEPRINT})
        slo = build_tracker(
            app,
            settings,
            self._slo_declarations,
            own_blueprints=own_blueprints,
            window_factory=shared.slo_window if shared is not None else None,
            on_internal_error=metric_set.count_internal_error,
        )
        health = build_monitor(
            app,
            settings.health,
            metric_set,
            self._checks,
            user_identity=self._user_identity,
            requests=shared.requests if shared is not None else None,
            users=shared.users if shared is not None else None,
            redis=shared.link if shared is not None else None,
            objectives=slo.safe_statuses,
        )
        instrumentation = RequestInstrumentation(
            metric_set,
            settings.http,
            own_blueprints=own_blueprints,
            health=health,
            route_observer=slo.observe,
            observes=slo.covers,
            on_internal_error=metric_set.count_internal_error,
            label_length=shared_state.label_length,
            exclusions=self._exclusions,
            fold_seconds=settings.redis.flush_seconds if shared is not None else None,
        )
        receivers = install_receivers(
            app, series, settings.shared, strict=settings.strict, exemplars=settings.http.exemplars
        )
        page = status_page(
            app,
            settings.status,
            health,
            # What /metrics serves, read when the page is served (by then `state`, assigned
            # below, exists: the lambda is no mere alias of a method).
            registry=lambda: state.scrape_registry(),  # noqa: PLW0108
            own_paths=(route.path for route in routes),
            on_error=metric_set.count_internal_error,
        )
        state = AppState(
            settings=settings,
            registry=registry,
            metric_set=metric_set,
            instrumentation=instrumentation,
            own_blueprints=own_blueprints,
            health=health,
            receivers=receivers,
            redis=shared.link if shared is not None else None,
            multiprocess_dir=multiprocess_dir,
            status_page=page,
            slo=slo,
            guard=Guard(settings.auth, self._auth),
        )
        self._register_views(app, state)
        # A route the app adds on one of our paths after this call (a blueprint registered
        # later in the factory) is reported at the first request. First in the list, so a
        # hook of the app that answers early cannot skip it; the instrumentation's hook goes
        # in front of it just below.
        late_check = LateConflictCheck(routes)
        app.before_request(late_check)
        app.before_request_funcs[None].remove(late_check)
        app.before_request_funcs[None].insert(0, late_check)
        # The request hooks last: an app is either measured and registered, or neither.
        instrumentation.install(app)
        self._trackers.add(slo)
        # `flask appmetrics ...`, also offered by the package's flask.commands entry point.
        app.cli.add_command(appmetrics_commands)
        app.extensions[EXTENSION_KEY] = state
        if own_registry:
            self._app_registries.add(registry)
        set_latest(state)
        app_initialized.send(app)
        logger.info("Prometheus metrics initialized successfully")
        if settings.endpoints.metrics_path is not None:
            logger.info("Metrics available at %s endpoint", settings.endpoints.metrics_path)
        if settings.sentry.dsn is not None:
            secrets = app_secrets(settings, app.config.get("SECRET_KEY"))
            init_sentry(settings.sentry, secrets=secrets)
        _drain_on_sigterm(settings.health.drain_seconds)

    def _register_views(self, app: Flask, state: AppState) -> None:
        """Register the blueprints of *app*'s paths that are set, each view given the
        pieces of *state* it serves and the guard that decides who may read them."""
        settings = state.settings
        guard = state.guard
        count_internal_error = state.metric_set.count_internal_error
        if settings.endpoints.metrics_path is not None:
            app.register_blueprint(
                metrics_blueprint(settings.endpoints.metrics_path, guard, state.scrape_registry)
            )
        page = state.status_page
        health_views = health_blueprint(
            settings.endpoints, state.health, guard, page, count_internal_error
        )
        if health_views is not None:
            app.register_blueprint(health_views)
        if page is not None:
            app.register_blueprint(status_blueprint(page, guard, count_internal_error))

    def exclude(self, target: T) -> T:
        """Leave *target* out of every HTTP family and the health windows, in every app.

        *target* is a view function (as a decorator, above or below ``@app.route``), a
        ``View`` class, a :class:`~flask.Blueprint` (its views and those of blueprints
        nested in it) or a blueprint's name::

            @app.get("/internal/ping")
            @metrics.exclude
            def ping():
                return "pong"

            metrics.exclude(admin_blueprint)

        Call it while the app is set up: a route is judged at its first request.

        :raises TypeError: *target* is none of these.
        """
        return self._exclusions.add(target)

    def health_check(
        self,
        name: str,
        *,
        critical: bool = True,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        failure_cache_seconds: float | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the health check *name*, for every app.

        ::

            @metrics.health_check("database", critical=True, timeout=2.0)
            def database() -> bool:
                db.session.execute(text("SELECT 1"))
                return True

        The check runs in the app's context, in a thread of its own, when ``/api/health``,
        ``/readyz``, ``/metrics``, the status page or ``get_health_status()`` needs its
        result and the last one is older than *cache_seconds* (default
        ``APPMETRICS_HEALTH_CHECK_CACHE_SECONDS``; after a failure *failure_cache_seconds*,
        default ``APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS``); callers arriving while it
        runs share that run. It fails when it returns ``False``, raises, or runs past
        *timeout* seconds (default ``APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS``); a failed
        critical check makes the app ``unhealthy`` (503), a non-critical one ``degraded``.
        Checks belong to this extension object and apply to every app it initialises,
        before or after; a name registered again replaces the earlier check.
        """
        return self._checks.decorator(
            name,
            critical=critical,
            timeout=timeout,
            cache_seconds=cache_seconds,
            failure_cache_seconds=failure_cache_seconds,
        )

    def add_health_check(
        self,
        name: str,
        func: CheckFunc,
        *,
        critical: bool = True,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        failure_cache_seconds: float | None = None,
    ) -> None:
        """Register *func* as the health check *name*; see :meth:`health_check`."""
        self._checks.add(
            name,
            func,
            critical=critical,
            timeout=timeout,
            cache_seconds=cache_seconds,
            failure_cache_seconds=failure_cache_seconds,
        )

    def remove_health_check(self, name: str) -> None:
        """Unregister the health check *name* (no error if absent)."""
        self._checks.remove(name)

    # -- service level objectives ----------------------------------------------------------

    def slo(
        self,
        *,
        availability: float | None = None,
        latency: tuple[str | float, float] | None = None,
        name: str | None = None,
    ) -> Callable[[Target], Target]:
        """Declare service level objectives for the decorated view, or for a blueprint::

            @app.get("/search")
            @metrics.slo(availability=0.999, latency=("300ms", 0.99))
            def search(): ...

            metrics.slo(availability=0.995)(api)  # every view of the blueprint api

        *availability*: the share of requests that must not fail with a 5xx; *latency*:
        ``(threshold, share)``, the share that must finish within *threshold*
        (``"300ms"``, ``"0.3s"`` or seconds), which must be a bucket boundary of
        ``http_request_duration_seconds`` (``APPMETRICS_BUCKETS``). Both are judged over
        the last ``APPMETRICS_SLO_WINDOW_DAYS`` (30). *name* defaults to the view's
        endpoint, or the blueprint's name. Objectives belong to this extension and apply
        to every app it initialises that routes the view or registers the blueprint.
        See :doc:`/guide/slo`.

        :raises ConfigurationError: a value is malformed, or the latency threshold is not
            a bucket boundary of an app already initialised.
        """
        # Malformed values are refused here, before anything is decorated.
        declare(Scope("app"), availability=availability, latency=latency, name=name, source="slo()")

        def decorate(target: Target) -> Target:
            if isinstance(target, Blueprint):
                scope = Scope("blueprint", blueprint=target.name)
                source = f"metrics.slo() on blueprint {target.name!r}"
            elif callable(target):
                scope = Scope("view", view=target)
                source = f"@metrics.slo on {getattr(target, '__qualname__', target)!r}"
            else:
                raise TypeError(f"metrics.slo() decorates a view or a blueprint, not {target!r}")
            self._add_declaration(
                declare(scope, availability=availability, latency=latency, name=name, source=source)
            )
            return target

        return decorate

    def add_slo(
        self,
        *,
        availability: float | None = None,
        latency: tuple[str | float, float] | None = None,
        name: str | None = None,
        blueprint: str | None = None,
        endpoints: str | Sequence[str] | None = None,
    ) -> None:
        """Declare service level objectives for the whole app (default), a blueprint (by
        name) or endpoints (Flask endpoint names); see :meth:`slo` for the rest::

            metrics.add_slo(name="api", availability=0.999)

        :raises ConfigurationError: as :meth:`slo`.
        """
        if blueprint is not None and endpoints is not None:
            raise ValueError("give blueprint or endpoints, not both")
        scope = Scope("app")
        if blueprint is not None:
            scope = Scope("blueprint", blueprint=blueprint)
        elif endpoints is not None:
            names = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
            scope = Scope("endpoints", endpoints=names)
        source = f"metrics.add_slo({name or scope.describe()!r})"
        self._add_declaration(
            declare(scope, availability=availability, latency=latency, name=name, source=source)
        )

    def _add_declaration(self, declaration: Declaration) -> None:
        for tracker in list(self._trackers):
            problem = threshold_problem(declaration, tracker.buckets)
            if problem is not None:
                raise ConfigurationError(declaration.source, problem)
        self._slo.append(declaration)
        for tracker in list(self._trackers):
            tracker.invalidate()

    def _slo_declarations(self) -> tuple[Declaration, ...]:
        return tuple(self._slo)

    def _registry_now(self) -> CollectorRegistry | None:
        """The registry of the app recording now, when it is one of this extension's apps
        with a registry of its own (see :meth:`init_app`); ``None`` otherwise, for
        :attr:`registry`. The app recording is the one in context, else the most recently
        initialised one."""
        if not self._app_registries:
            return None  # the usual case: every app records into the extension's registry
        state = current_state()
        if state is None or state.registry not in self._app_registries:
            return None
        return state.registry

    @staticmethod
    def start_draining(reason: str = DEFAULT_REASON, *, seconds: float | None = None) -> Drain:
        """Take this server out of rotation while it keeps serving: ``/readyz`` answers
        503 with *reason* from now on (in every worker forked by the same gunicorn or uWSGI
        master), requests are served and counted as usual.

        For servers whose shutdown flask-appmetrics cannot hook (call it from the server's
        own shutdown hook), and for a Kubernetes ``preStop`` hook that calls a route of the
        app. Draining is per server, not per app: it has no way back short of a restart.

        :param seconds: when the server will stop serving, if known (shown by ``/readyz``).
        """
        return PROCESS_DRAIN.start(reason, seconds)

    @staticmethod
    def state(app: Flask) -> AppState | None:
        """The per-app state of *app*, or ``None`` if it was not initialised."""
        return state_of(app)

    def metric(self, name: str) -> Counter | Gauge | Histogram:
        """The collector of the extension's family *name* (``"http_requests_total"``) in
        this extension's registry (or the registry of the app in context, when
        :meth:`init_app` gave it one), to record into from app code.

        Works before and after :meth:`init_app`: a module imported after it (a blueprint
        imported inside the app factory) cannot create its own
        ``Counter("http_requests_total", ...)`` in the same registry (prometheus_client
        raises ``Duplicated timeseries``), but can take this one::

            http_requests_total = metrics.metric("http_requests_total")

        Before any ``init_app`` on the registry, the family is registered now from the
        catalog (``http_request_duration_seconds`` with the default buckets) and adopted
        by ``init_app`` later.

        :raises UnknownMetricError: *name* is not one of the extension's families.
        :raises MetricConflictError: the name is taken by an incompatible collector.
        """
        registry = self._registry_now() or self.registry
        return registry_state(registry).catalog_metric(name, buckets=DEFAULT_BUCKETS)


def _drain_on_sigterm(seconds: float) -> None:
    """Drain for *seconds* (if above 0) on SIGTERM in this process, where its server lets
    us."""
    if seconds <= 0:
        return
    if PROCESS_DRAIN.armed() and not SIGTERM_DRAIN.installed:
        return  # the server's master drains (gunicorn with flask_appmetrics.gunicorn)
    if SIGTERM_DRAIN.install(seconds):
        logger.info(
            "flask-appmetrics: on SIGTERM this process drains for %g s (/readyz answers 503 "
            "while requests are still served) before it stops",
            seconds,
        )
        return
    logger.warning(
        "flask-appmetrics: APPMETRICS_DRAIN_SECONDS is %g but this process's server handles "
        "SIGTERM itself, so nothing drains on SIGTERM. Under gunicorn use its config module "
        "(-c python:flask_appmetrics.gunicorn, with the variable in gunicorn's environment); "
        "elsewhere call FlaskMetrics.start_draining() from the server's shutdown hook.",
        seconds,
    )


def _own_routes(settings: Settings) -> tuple[OwnRoute, ...]:
    """The paths this app's extension will serve, with their keys and endpoints."""
    endpoints, status = settings.endpoints, settings.status
    candidates = (
        ("APPMETRICS_METRICS_PATH", endpoints.metrics_path, f"{METRICS_BLUEPRINT}.metrics"),
        ("APPMETRICS_HEALTH_PATH", endpoints.health_path, f"{HEALTH_BLUEPRINT}.health"),
        ("APPMETRICS_LIVEZ_PATH", endpoints.livez_path, f"{HEALTH_BLUEPRINT}.livez"),
        ("APPMETRICS_READYZ_PATH", endpoints.readyz_path, f"{HEALTH_BLUEPRINT}.readyz"),
        ("APPMETRICS_STATUS_PATH", status.path, f"{STATUS_BLUEPRINT}.status"),
    )
    return tuple(
        OwnRoute(key, path, endpoint) for key, path, endpoint in candidates if path is not None
    )
