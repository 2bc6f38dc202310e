"""Per-request HTTP measurement through Flask's request hooks.

One :class:`RequestInstrumentation` serves one app. The hot path is a dictionary lookup of
pre-bound prometheus_client children per (method, endpoint) plus three metric updates;
everything that depends only on the route is computed once and cached.

Life of a request:

* ``before_request`` (installed first, so no other hook can short-circuit it) resolves the
  labels, raises ``http_requests_in_progress`` and stores the start time in the WSGI
  environ (per request, unlike ``g``, which a test's pushed app context can share).
* ``after_request`` records status and duration; for a streamed response (a generator,
  ``stream_with_context``, a file from ``send_file``, ``send_from_directory`` or the static
  route) it defers that to the end of the body: the WSGI backstop makes closing the body
  the server receives end the request, so the duration runs to the last chunk sent.
* Flask's ``got_request_exception`` signal counts unhandled exceptions in
  ``application_errors_total`` and records a 500 for a request whose ``after_request``
  will never run (``TESTING`` or ``PROPAGATE_EXCEPTIONS`` re-raises the error).

Nothing here raises into the request: a failure is logged and counted instead.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from time import perf_counter
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, got_request_exception, request
from flask.globals import request_ctx

from ..errors import count_internal_error
from ..metrics.labels import (
    METHOD_LABELS,
    OTHER_METHOD,
    UNMATCHED_ENDPOINT,
    BoundedLabel,
    LabelLength,
)
from ..metrics.multiprocess.setup import ENV_VAR
from ..metrics.registration import value_class_is_multiprocess

if TYPE_CHECKING:
    from flask.ctx import RequestContext
    from werkzeug.routing import Rule

    from ..metrics.catalog import MetricSet
    from ..settings import HttpSettings

logger = logging.getLogger(__name__)

#: The environ key of a request being measured: ``(route, start)`` until ``after_request``,
#: then, for a streamed body, the :class:`_StreamEnd` the backstop attaches to the body.
#: One key, so that the backstop tests one key per request on the hot path.
_PENDING = "flask_appmetrics.pending"

#: Bytes per chunk when a bare file body is read (werkzeug's and gunicorn's block size).
_FILE_BLOCK = 8192

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


class _StreamEnd:
    """Ends one streamed request, once: at the first ``close()`` of its body that reaches
    it (the body the server received, or the response's own close callbacks)."""

    __slots__ = ("_instrumentation", "_pending", "status")

    def __init__(
        self, instrumentation: RequestInstrumentation, pending: tuple[_Route, float], status: int
    ) -> None:
        self._instrumentation = instrumentation
        self._pending: tuple[_Route, float] | None = pending
        #: The status recorded; a failure after ``after_request`` replaces it.
        self.status = status

    def __call__(self) -> None:
        # Both close paths run in the thread that serves the request, one after the other:
        # clearing before finishing is enough to record once.
        pending, self._pending = self._pending, None
        if pending is not None:
            self._instrumentation._finish(pending, self.status)


class _ClosingBody:
    """A response body whose ``close()`` also ends the request it belongs to.

    Iterating it iterates the wrapped body itself (no per-chunk cost), except a bare file
    (what uWSGI's ``wsgi.file_wrapper`` returns: the file itself), which is read in blocks:
    iterating a binary file yields "lines", the whole file for one without newlines.
    ``close()`` closes the wrapped body (the file, the generator) and then ends the
    request, even if that close fails.
    """

    __slots__ = ("_body", "_end")

    def __init__(self, body: Iterable[bytes], end: _StreamEnd) -> None:
        self._body = body
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        read = getattr(self._body, "read", None)
        if callable(read):
            return iter(partial(read, _FILE_BLOCK), b"")
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._end()


def _ending_on_close(body: Iterable[bytes], end: _StreamEnd, environ: dict[str, Any]) -> Any:
    """*body*, made to end its request when the server closes it.

    The server's own ``wsgi.file_wrapper`` (what ``send_file`` and the static route return
    under gunicorn) is kept as it is, its ``close`` chained on the instance: the server
    recognises that type to send the file with ``sendfile()``, which a wrapper would
    defeat. Any other body is wrapped.
    """
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        close = getattr(body, "close", None)

        def closing() -> None:
            try:
                if close is not None:
                    close()
            finally:
                end()

        try:
            body.close = closing  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # a wrapper with __slots__: wrapped below
            pass
        else:
            return body
    return _ClosingBody(body, end)


#: The pid of the process that warned about several workers without multiprocess mode,
#: so that the warning is logged once per process whatever the number of apps.
_warned_pid: int | None = None


def _check_workers(environ: dict[str, Any]) -> None:
    """Warn when the server runs several worker processes (``wsgi.multiprocess``) while
    prometheus_client keeps each worker's metrics in its own memory: every scrape then
    shows the numbers of whichever worker answers it, and they reset as workers restart."""
    global _warned_pid  # noqa: PLW0603 - one warning per process by design
    if not environ.get("wsgi.multiprocess") or _warned_pid == os.getpid():
        return
    if value_class_is_multiprocess():
        return
    _warned_pid = os.getpid()
    logger.warning(
        "flask-appmetrics: worker %d is one of several worker processes (wsgi.multiprocess) "
        "but prometheus_client's multiprocess mode is off, so /metrics shows only the "
        "worker that answers each scrape. Set %s to an empty directory in the server's "
        "environment and, under gunicorn, start it with -c python:flask_appmetrics.gunicorn",
        _warned_pid,
        ENV_VAR,
    )


def _with_backstop(wsgi_app: Any, instrumentation: RequestInstrumentation) -> Any:
    """Wrap the app's WSGI callable to end each request no hook of ours could end.

    * A streamed body is ended when the server closes it: ``after_request`` leaves a
      :class:`_StreamEnd` in the environ and the body the server receives is made to call
      it. ``response.call_on_close`` alone is not enough: for a ``direct_passthrough``
      body (``send_file``, static files) werkzeug hands the file wrapper to the server
      as it is, so the response's close callbacks never run.
    * A request whose ``after_request`` never ran for us ends as a 500: an
      ``after_request`` hook of the app that fails twice (for the response and again for
      the error page: Flask then logs it and sends its 500 without running the remaining
      hooks, ours included), a 500 handler of the app that fails itself, or a
      ``BaseException`` (``SystemExit`` from a worker timeout) leaving the view.

    The first request also checks the server's worker model (:func:`_check_workers`). A
    closure, not an object with ``__call__``: the call costs less on every request.
    """
    # Weak, like the exception forwarder: the app must stay collectable.
    target = weakref.ref(instrumentation)
    first = True

    def abandon(environ: dict[str, Any]) -> None:
        pending = environ.pop(_PENDING)
        if type(pending) is _StreamEnd:
            pending.status = 500
            pending()
            return
        live = target()
        if live is not None:
            live._finish(pending, 500)

    def backstop(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal first
        if first:
            first = False
            try:
                _check_workers(environ)
            except Exception:  # pragma: no cover - a warning must never fail a request
                logger.exception("flask-appmetrics could not check the server's workers")
        try:
            body = wsgi_app(environ, start_response)
        except BaseException:
            if _PENDING in environ:
                abandon(environ)
            raise
        if _PENDING in environ:
            pending = environ[_PENDING]
            if type(pending) is _StreamEnd:
                del environ[_PENDING]
                try:
                    return _ending_on_close(body, pending, environ)
                except Exception:  # pragma: no cover - defensive: the body still goes out
                    logger.exception("flask-appmetrics could not attach to a streamed body")
                    return body
            abandon(environ)
        return body

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
    :param label_length: the length cap of ``error_type`` values (the registry's
        ``APPMETRICS_MAX_LABEL_LENGTH``).
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
        label_length: LabelLength | None = None,
    ) -> None:
        self._metric_set = metric_set
        self._exclude = settings.exclude_paths
        self._own_blueprints = own_blueprints
        self._routes: dict[tuple[str, str], _Route] = {}
        self._errors = metric_set.counter("application_errors_total")
        self._error_type = BoundedLabel(settings.max_error_types, length=label_length)
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
            environ = ctx.request.environ
            pending = environ.pop(_PENDING, None)
            if pending is not None:
                if type(pending) is _StreamEnd:
                    # Flask replaced a streamed response after our hook ran (saving the
                    # session failed) and runs the hooks again for its error page.
                    pending.status = response.status_code
                    if _streams_body(response):
                        self._defer(response, pending, environ)
                    else:
                        pending()
                    return response
                if _streams_body(response):
                    # Time a streamed body to its end: the WSGI server closes it after
                    # sending the last chunk.
                    end = _StreamEnd(self, pending, response.status_code)
                    self._defer(response, end, environ)
                else:
                    self._finish(pending, response.status_code)
                if pending[0].in_window and self.user_observer is not None:
                    self.user_observer(ctx)
        except Exception:
            self._internal_error("after_request")
        return response

    @staticmethod
    def _defer(response: Response, end: _StreamEnd, environ: dict[str, Any]) -> None:
        # For the backstop, which attaches it to the body the server closes; the close
        # callback covers a middleware between it and the app that copies the environ.
        environ[_PENDING] = end
        response.call_on_close(end)

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
                if type(pending) is _StreamEnd:
                    # The streamed response is dropped for the error: the client gets a 500.
                    pending.status = 500
                    pending()
                elif pending is not None:
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
        count_internal_error(where, self._on_internal_error)
