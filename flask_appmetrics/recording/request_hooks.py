"""Per-request HTTP measurement through Flask's request hooks and a WSGI backstop.

One :class:`RequestInstrumentation` serves one app. The hot path is a dictionary lookup of
pre-bound prometheus_client children per (method, endpoint) plus three metric updates;
everything that depends only on the route is computed once and cached.

Life of a request:

* The backstop (the app's ``wsgi_app``, wrapped) starts the clock and puts a per-request
  slot (a list) in the WSGI environ. The hooks write into the slot rather than into the
  environ, so a middleware between the backstop and Flask that copies the environ still
  shares it with the backstop.
* ``before_request`` (installed first, so no other hook can short-circuit it) resolves the
  labels and raises ``http_requests_in_progress``.
* ``after_request`` stores the status of the response and whether its body streams (a
  generator, ``stream_with_context``, a file from ``send_file``, ``send_from_directory`` or
  the static route, any iterable other than a list, a tuple or werkzeug's
  ``ClosingIterator`` of an error page). It runs again when Flask replaces the response
  with a 500 (saving the session failed): the later status wins. It resolves the labels
  itself when ``before_request`` never ran (a ``url_value_preprocessor`` refused the
  request).
* The backstop records the request, once: when ``wsgi_app`` returns, for a body that does
  not stream; when the server closes the body, for one that does (the duration then runs
  to the last chunk sent); as a 500 when ``wsgi_app`` raises (a failing
  ``teardown_request``, an error re-raised under ``TESTING`` or ``PROPAGATE_EXCEPTIONS``).
  An exception raised while a streamed body is iterated records a 500 and counts in
  ``application_errors_total``.
* Flask's ``got_request_exception`` signal counts unhandled exceptions in
  ``application_errors_total``.

Flask's test client calls ``wsgi_app`` through the app, so a plain response is recorded
when the test gets it; a streamed one when the test closes the response.

Nothing here raises into the request: a failure is logged and counted instead.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, got_request_exception, request
from flask.globals import request_ctx
from werkzeug.wsgi import ClosingIterator

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

#: The environ key of the per-request slot the backstop creates: a list
#: ``[route, start, status, streams, user_noted]``. ``route`` is the :class:`_Route`, ``None``
#: until a hook resolves it, ``False`` for an excluded path; ``status`` is 500 until
#: ``after_request`` stores the response's; ``streams`` says the body is recorded at its
#: close. A list (not separate keys) so that a middleware's shallow copy of the environ
#: shares it, and indexed by literals on the hot path.
_SLOT = "flask_appmetrics.slot"

#: Body types that are complete when ``wsgi_app`` returns: a plain body, and werkzeug's
#: ``ClosingIterator``, what Flask makes of an ``HTTPException`` (its error page).
_COMPLETE_BODIES = frozenset({list, tuple, ClosingIterator})

#: Bytes per chunk when a bare file body is read (werkzeug's and gunicorn's block size).
_FILE_BLOCK = 8192

#: Called when a request that counts for health ends: ``(duration_seconds, status_code)``.
RequestObserver = Callable[[float, int], None]
#: Called when a request that counts for health ends, with its labels:
#: ``(method, endpoint, duration_seconds, status_code)``.
RouteObserver = Callable[[str, str, float, int], None]
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


class _StreamEnd:
    """Ends one streamed request, once: at the first ``close()`` of its body."""

    __slots__ = ("_instrumentation", "_slot")

    def __init__(self, instrumentation: RequestInstrumentation, slot: list[Any]) -> None:
        self._instrumentation = instrumentation
        self._slot: list[Any] | None = slot

    def __call__(self) -> None:
        # The close runs in the thread that serves the request: clearing before finishing
        # is enough to record once.
        slot, self._slot = self._slot, None
        if slot is not None:
            self._instrumentation._finish(slot[0], slot[1], slot[2])

    def failed(self, exception: BaseException) -> None:
        """The body raised while it was sent: the client gets a truncated response."""
        slot = self._slot
        if slot is not None:
            slot[2] = 500
            try:
                self._instrumentation._count_error(slot[0].endpoint, exception)
            except Exception:
                self._instrumentation._internal_error("finish")


class _ClosingBody:
    """A response body whose ``close()`` also ends the request it belongs to.

    Iterating it iterates the wrapped body, or a bare file (what uWSGI's
    ``wsgi.file_wrapper`` returns: the file itself) in blocks: iterating a binary file
    yields "lines", the whole file for one without newlines. An exception raised while
    iterating makes the request a 500 and counts in ``application_errors_total``, then
    propagates to the server. ``close()`` closes the wrapped body (the file, the
    generator) and then ends the request, even if that close fails.
    """

    __slots__ = ("_body", "_end")

    def __init__(self, body: Iterable[bytes], end: _StreamEnd) -> None:
        self._body = body
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        read = getattr(self._body, "read", None)
        chunks = iter(partial(read, _FILE_BLOCK), b"") if callable(read) else iter(self._body)
        try:
            yield from chunks
        except Exception as exc:
            self._end.failed(exc)
            raise

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
    defeat (the server reads that file itself, so a failure to read it is the server's to
    report). Any other body is wrapped.
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
    """Wrap the app's WSGI callable to measure each request from the server's side.

    It starts the clock, gives the hooks a slot in the environ (:data:`_SLOT`) and records
    the request from what they wrote there: when ``wsgi_app`` returns, or, for a streamed
    body, when the server closes the body (``response.call_on_close`` is not enough: for
    a ``direct_passthrough`` body, ``send_file`` and static files, werkzeug hands the file
    wrapper to the server as it is, so the response's close callbacks never run). A
    request whose ``after_request`` never ran for us keeps the slot's 500: an
    ``after_request`` hook of the app that fails twice (Flask then logs it and sends its
    500 without running the remaining hooks, ours included) or a 500 handler of the app
    that fails itself. When ``wsgi_app`` raises (a failing ``teardown_request``, an error
    re-raised under ``TESTING``, a ``BaseException`` such as ``SystemExit`` from a worker
    timeout), the server answers 500 and that is recorded.

    The first request also checks the server's worker model (:func:`_check_workers`). A
    closure, not an object with ``__call__``: the call costs less on every request.
    """
    # Weak, like the exception forwarder: the app must stay collectable.
    target = weakref.ref(instrumentation)
    first = True

    def backstop(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal first
        if first:
            first = False
            try:
                _check_workers(environ)
            except Exception:  # pragma: no cover - a warning must never fail a request
                logger.exception("flask-appmetrics could not check the server's workers")
        slot = environ[_SLOT] = [None, perf_counter(), 500, False, False]
        try:
            body = wsgi_app(environ, start_response)
        except BaseException:
            route = slot[0]
            if route:
                live = target()
                if live is not None:
                    live._finish(route, slot[1], 500)
            raise
        route = slot[0]
        if route:
            live = target()
            if live is not None:
                if slot[3]:
                    try:
                        return _ending_on_close(body, _StreamEnd(live, slot), environ)
                    except Exception:  # pragma: no cover - defensive: the body still goes out
                        live._internal_error("finish")
                live._finish(route, slot[1], slot[2])
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
    :param route_observer: told the same, with the request's method and endpoint labels
        (the service level objectives count by route).
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
        route_observer: RouteObserver | None = None,
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
        self.route_observer = route_observer
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
            slot = req.environ.get(_SLOT)
            if slot is not None:  # None: a request not served through the app's wsgi_app
                slot[0] = self._resolve(req)
        except Exception:
            self._internal_error("before_request")

    def _after_request(self, response: Response) -> Response:
        try:
            ctx: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
            slot = ctx.request.environ.get(_SLOT)
            if slot is not None:
                route = slot[0]
                if route is None:  # before_request never ran (a url_value_preprocessor)
                    route = slot[0] = self._resolve(ctx.request)
                if route:
                    # Later runs overwrite: Flask runs the hooks again for the 500 it sends
                    # when saving the session fails.
                    slot[2] = response.status_code
                    slot[3] = (
                        response.direct_passthrough
                        or type(response.response) not in _COMPLETE_BODIES
                    )
                    if not slot[4] and route.in_window and self.user_observer is not None:
                        slot[4] = True
                        self.user_observer(ctx)
        except Exception:
            self._internal_error("after_request")
        return response

    def _on_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        # Flask's got_request_exception: an unhandled exception in this app's request.
        try:
            ctx: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
            rule = ctx.request.url_rule
            endpoint = rule.rule if rule is not None else UNMATCHED_ENDPOINT
            self._count_error(endpoint, exception)
            slot = ctx.request.environ.get(_SLOT)
            if slot is not None:
                route = slot[0]
                if route is None:
                    route = slot[0] = self._resolve(ctx.request)
                # The client gets a 500: Flask's error page, or the server's when Flask
                # re-raises (TESTING, DEBUG or PROPAGATE_EXCEPTIONS), and then no
                # after_request runs: the user is noted here.
                slot[2] = 500
                if (
                    route
                    and not slot[4]
                    and _propagates(sender)
                    and route.in_window
                    and self.user_observer is not None
                ):
                    slot[4] = True
                    self.user_observer(ctx)
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

    def _resolve(self, req: Request) -> _Route | bool:
        """The route of *req*, its ``http_requests_in_progress`` raised; ``False`` for an
        excluded path."""
        if (
            self._exclude
            and req.path.startswith(self._exclude)
            and _excluded(req.path, self._exclude)
        ):
            return False
        rule = req.url_rule
        key = (
            METHOD_LABELS.get(req.method, OTHER_METHOD),
            rule.rule if rule is not None else UNMATCHED_ENDPOINT,
        )
        route = self._routes.get(key)
        if route is None:
            route = self._route(key, rule)
        route.in_progress.inc()
        return route

    def _finish(self, route: _Route, start: float, status: int) -> None:
        try:
            duration = perf_counter() - start
            route.duration.observe(duration)
            route.count(status)
            route.in_progress.dec()
            if route.in_window:
                if self.observer is not None:
                    self.observer(duration, status)
                if self.route_observer is not None:
                    self.route_observer(route.method, route.endpoint, duration, status)
        except Exception:
            self._internal_error("finish")

    def _count_error(self, endpoint: str, exception: BaseException) -> None:
        self._errors.labels(endpoint, self._error_type(type(exception).__name__)).inc()

    def _internal_error(self, where: str) -> None:
        logger.exception("flask-appmetrics failed in %s; the request is unaffected", where)
        count_internal_error(where, self._on_internal_error)
