"""Per-request HTTP measurement through Flask's request hooks.

One :class:`RequestInstrumentation` serves one app. The hot path is a dictionary lookup of
pre-bound prometheus_client children per (method, endpoint) plus three metric updates;
everything that depends only on the route is computed once and cached.

Life of a request:

* ``before_request`` (installed first, so no other hook can short-circuit it) resolves the
  labels, raises ``http_requests_in_progress`` and stores the start time in the WSGI
  environ (per request, unlike ``g``, which a test's pushed app context can share).
* ``after_request`` records status and duration; for a streamed response it defers that to
  the response's ``close()``, so the duration runs to the end of the body.
* Flask's ``got_request_exception`` signal counts unhandled exceptions in
  ``application_errors_total`` and records a 500 for a request whose ``after_request``
  will never run (``TESTING`` or ``PROPAGATE_EXCEPTIONS`` re-raises the error).

Nothing here raises into the request: a failure is logged and counted instead.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from functools import partial
from time import perf_counter
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, got_request_exception, request
from flask.globals import request_ctx

from ._labels import METHOD_LABELS, OTHER_METHOD, UNMATCHED_ENDPOINT, BoundedLabel

if TYPE_CHECKING:
    from flask.ctx import RequestContext
    from werkzeug.routing import Rule

    from ._settings import HttpSettings
    from .catalog import MetricSet

logger = logging.getLogger(__name__)

_PENDING = "flask_appmetrics.pending"

#: Called when a request that counts for health ends: ``(duration_seconds, status_code)``.
RequestObserver = Callable[[float, int], None]
#: Called, in the request context, once per request that counts for health: to note its user.
UserObserver = Callable[["RequestContext"], None]


class _Route:
    """Pre-bound metric children for one (method, endpoint) pair."""

    __slots__ = (
        "by_status",
        "duration",
        "endpoint",
        "in_progress",
        "in_window",
        "method",
        "requests",
    )

    def __init__(self, metric_set: MetricSet, method: str, endpoint: str, in_window: bool) -> None:
        self.method = method
        self.endpoint = endpoint
        self.in_window = in_window
        self.requests = metric_set.counter("http_requests_total")
        self.duration = metric_set.histogram("http_request_duration_seconds").labels(
            method, endpoint
        )
        self.in_progress = metric_set.gauge("http_requests_in_progress").labels(method, endpoint)
        self.by_status: dict[int, Any] = {}

    def count(self, status: int) -> None:
        child = self.by_status.get(status)
        if child is None:
            child = self.requests.labels(self.method, self.endpoint, str(status))
            self.by_status[status] = child
        child.inc()


def _excluded(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether *path* is one of *prefixes* or below one, by whole path segments:
    ``/metrics`` excludes ``/metrics`` and ``/metrics/x``, not ``/metricsfoo``."""
    return any(
        path == prefix
        or (path.startswith(prefix) and (prefix.endswith("/") or path[len(prefix)] == "/"))
        for prefix in prefixes
    )


def _streams_body(response: Response) -> bool:
    """Whether the body is produced while it is sent: a generator (``stream_with_context``
    included) or a file (``send_file``). Error pages that Flask converts from werkzeug
    exceptions are also "streamed" iterators, but already complete: deferring those would
    leave them unrecorded until the response is closed, which test clients never do."""
    return response.direct_passthrough or isinstance(response.response, GeneratorType)


def _with_backstop(wsgi_app: Any, instrumentation: RequestInstrumentation) -> Any:
    """Wrap the app's WSGI callable to end a request that no hook of ours could end.

    That happens when an ``after_request`` hook of the app fails twice (for the response
    and again for the error page: Flask then logs it and sends its 500 without running the
    remaining hooks, ours included), when the app's 500 handler itself fails, or when a
    ``BaseException`` (``SystemExit`` from a worker timeout) leaves the view. A closure,
    not an object with ``__call__``: the call costs less on every request.
    """
    # Weak, like the exception forwarder: the app must stay collectable.
    target = weakref.ref(instrumentation)

    def backstop(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return wsgi_app(environ, start_response)
        finally:
            if _PENDING in environ:
                pending = environ.pop(_PENDING)
                live = target()
                if live is not None:
                    live._finish(pending, 500)

    return backstop


class _ExceptionForwarder:
    """A ``got_request_exception`` receiver that does not keep its app alive."""

    __slots__ = ("_target",)

    def __init__(self, target: RequestInstrumentation) -> None:
        self._target = weakref.ref(target)

    def __call__(self, sender: Flask, exception: BaseException, **extra: Any) -> None:
        target = self._target()
        if target is not None:
            target._on_exception(sender, exception)


def _propagates(app: Flask) -> bool:
    """Whether Flask re-raises unhandled exceptions (its ``handle_exception`` rule)."""
    propagate = app.config["PROPAGATE_EXCEPTIONS"]
    return bool(app.testing or app.debug) if propagate is None else bool(propagate)


class RequestInstrumentation:
    """Installs the request hooks on one app and records into one metric set.

    :param metric_set: the registry's metrics.
    :param settings: the app's HTTP settings.
    :param own_blueprints: names of the extension's blueprints, kept out of the health window.
    :param observer: told about each finished request that counts for health.
    :param user_observer: given the request context of each request that counts for
        health, at ``after_request`` (after every ``before_request`` hook ran, so an
        identity another hook sets is there), or when an exception propagates.
    :param on_internal_error: told about each failure of the instrumentation itself.
    """

    def __init__(
        self,
        metric_set: MetricSet,
        settings: HttpSettings,
        *,
        own_blueprints: frozenset[str],
        observer: RequestObserver | None = None,
        user_observer: UserObserver | None = None,
        on_internal_error: Callable[[str], None] | None = None,
    ) -> None:
        self._metric_set = metric_set
        self._exclude = settings.exclude_paths
        self._own_blueprints = own_blueprints
        self._routes: dict[tuple[str, str], _Route] = {}
        self._errors = metric_set.counter("application_errors_total")
        self._error_type = BoundedLabel(settings.max_error_types)
        self.observer = observer
        self.user_observer = user_observer
        self._on_internal_error = on_internal_error

    def install(self, app: Flask) -> None:
        # Through Flask's setup methods (they refuse an app that already served requests),
        # then moved: our before_request first, so that a hook of another extension that
        # returns early (a rate limiter, a login redirect) cannot skip ours and leave the
        # request unmeasured; our after_request at the head of the list, which Flask runs
        # last, so that we record the response the client gets, even when an earlier hook
        # replaced it or failed into a 500.
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        before = app.before_request_funcs[None]
        before.remove(self._before_request)
        before.insert(0, self._before_request)
        after = app.after_request_funcs[None]
        after.remove(self._after_request)
        after.insert(0, self._after_request)
        app.wsgi_app = _with_backstop(app.wsgi_app, self)  # type: ignore[method-assign]
        forwarder = _ExceptionForwarder(self)
        got_request_exception.connect(forwarder, sender=app, weak=False)
        # The signal is process-global and holds its receiver strongly (weakly held bound
        # methods are dropped silently); the forwarder holds us weakly so the app can be
        # collected, and is disconnected with it.
        weakref.finalize(app, got_request_exception.disconnect, forwarder).atexit = False

    # -- hooks --------------------------------------------------------------------------

    def _before_request(self) -> None:
        try:
            # One context-variable lookup instead of one per attribute.
            req: Request = request._get_current_object()  # type: ignore[attr-defined]
            if (
                self._exclude
                and req.path.startswith(self._exclude)
                and _excluded(req.path, self._exclude)
            ):
                return
            rule = req.url_rule
            key = (
                METHOD_LABELS.get(req.method, OTHER_METHOD),
                rule.rule if rule is not None else UNMATCHED_ENDPOINT,
            )
            route = self._routes.get(key)
            if route is None:
                route = self._route(key, rule)
            route.in_progress.inc()
            req.environ[_PENDING] = (route, perf_counter())
        except Exception:
            self._internal_error("before_request")

    def _after_request(self, response: Response) -> Response:
        try:
            ctx: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
            pending = ctx.request.environ.pop(_PENDING, None)
            if pending is not None:
                if _streams_body(response):
                    # Time a streamed body to its end: the WSGI server closes the response
                    # after sending the last chunk.
                    response.call_on_close(partial(self._finish, pending, response.status_code))
                else:
                    self._finish(pending, response.status_code)
                if pending[0].in_window and self.user_observer is not None:
                    self.user_observer(ctx)
        except Exception:
            self._internal_error("after_request")
        return response

    def _on_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        # Flask's got_request_exception: an unhandled exception in this app's request.
        try:
            rule = request.url_rule
            endpoint = rule.rule if rule is not None else UNMATCHED_ENDPOINT
            self._errors.labels(endpoint, self._error_type(type(exception).__name__)).inc()
            if _propagates(sender):
                # TESTING, DEBUG or PROPAGATE_EXCEPTIONS: Flask re-raises and after_request
                # never runs; the client (or the server) answers 500.
                ctx: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
                pending = ctx.request.environ.pop(_PENDING, None)
                if pending is not None:
                    if pending[0].in_window and self.user_observer is not None:
                        self.user_observer(ctx)
                    self._finish(pending, 500)
        except Exception:
            self._internal_error("got_request_exception")

    # -- internals ----------------------------------------------------------------------

    def _route(self, key: tuple[str, str], rule: Rule | None) -> _Route:
        blueprint = rule.endpoint.partition(".")[0] if rule is not None else ""
        route = _Route(
            self._metric_set, key[0], key[1], in_window=blueprint not in self._own_blueprints
        )
        # Bounded: ten method labels times the app's URL rules, plus one unmatched endpoint.
        self._routes[key] = route
        return route

    def _finish(self, pending: tuple[_Route, float], status: int) -> None:
        try:
            route, start = pending
            duration = perf_counter() - start
            route.duration.observe(duration)
            route.count(status)
            route.in_progress.dec()
            if route.in_window and self.observer is not None:
                self.observer(duration, status)
        except Exception:
            self._internal_error("finish")

    def _internal_error(self, where: str) -> None:
        logger.exception("flask-appmetrics failed in %s; the request is unaffected", where)
        if self._on_internal_error is not None:
            try:
                self._on_internal_error(where)
            except Exception:  # pragma: no cover - the reporter itself failed
                logger.exception("flask-appmetrics could not count an internal error")
