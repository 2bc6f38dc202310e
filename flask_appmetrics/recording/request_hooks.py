"""Per-request HTTP measurement around Flask's request steps and a WSGI backstop.

One :class:`RequestInstrumentation` serves one app. The hot path is a dictionary lookup of
the route per (method, endpoint), two appends to the app's
:class:`~flask_appmetrics.recording.request_log.RequestLog` and, for requests that count
for health, the identity of the user; the log is folded into the metrics and the health
windows when they are read (see that module). Everything that depends only on the route
is computed once and cached.

Life of a request:

* The backstop (the app's ``wsgi_app``, wrapped) starts the clock and puts a per-request
  slot (a list) in the WSGI environ. The hooks write into the slot rather than into the
  environ, so a middleware between the backstop and Flask that copies the environ still
  shares it with the backstop.
* Before the app's request preprocessing (its ``url_value_preprocessor`` functions and
  ``before_request`` hooks, so that none can short-circuit it), the labels are resolved
  and the start is logged (``http_requests_in_progress``).
* After the app finalizes the response (its ``after_request`` hooks ran and the session
  was saved), the status of the response is stored, and whether its body streams (a
  generator, ``stream_with_context``, a file from ``send_file``, ``send_from_directory``
  or the static route, any iterable other than a list, a tuple or werkzeug's
  ``ClosingIterator`` of an error page), and the user's identity. When Flask replaces the
  response with a 500 (a hook or saving the session failed, or the view raised) it
  finalizes that one too: the later status wins.
* The backstop logs the end of the request, once: when ``wsgi_app`` returns, for a body
  that does not stream; when the server closes the body, for one that does (the duration
  then runs to the last chunk sent); as a 500 when ``wsgi_app`` raises (a failing
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
from collections.abc import Callable, Hashable, Iterable, Iterator
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, current_app, got_request_exception
from flask import globals as flask_globals
from flask.globals import request_ctx
from prometheus_client import values
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
from ..metrics.registry_state import registry_state
from ..metrics.value_writes import FileWrites
from .exclusions import Exclusions
from .identity import identity_key, identity_of
from .request_log import FOLD_SECONDS, RequestLog, Route, RouteObserver
from .request_measures import Measured, RequestMeasures
from .trace_context import TRACEPARENT, RequestTraceReader, request_trace_reader

if TYPE_CHECKING:
    from flask.ctx import RequestContext
    from werkzeug.routing import Rule

    from ..health.monitor import HealthMonitor
    from ..metrics.catalog import MetricSet
    from ..settings import HttpSettings

logger = logging.getLogger(__name__)

#: The environ key of the per-request slot the backstop creates: a list
#: ``[route, start, status, streams, user_noted, user, trace, measured]``. ``route`` is the
#: :class:`~flask_appmetrics.recording.request_log.Route`, ``None`` until a hook resolves
#: it, ``False`` for an excluded path or view; ``status`` is 500 until ``after_request``
#: stores the response's; ``trace`` is its trace id or ``traceparent`` header, for the
#: exemplar (``None``: none); ``measured`` the opt-in measurements
#: (:class:`~flask_appmetrics.recording.request_measures.Measured`, ``None`` when off);
#: ``streams`` says the body is recorded at its close; ``user`` is the identity
#: of the request's user (``None``: not counted). A list (not separate keys) so that a
#: middleware's shallow copy of the environ shares it, and indexed by literals on the hot
#: path.
_SLOT = "flask_appmetrics.slot"

#: Body types that are complete when ``wsgi_app`` returns: a plain body, and werkzeug's
#: ``ClosingIterator``, what Flask makes of an ``HTTPException`` (its error page).
_COMPLETE_BODIES = frozenset({list, tuple, ClosingIterator})


def _proxied_request_context() -> RequestContext:
    return request_ctx._get_current_object()  # type: ignore[attr-defined,no-any-return]


#: The current request context. Flask private API: the context variable behind its
#: ``request_ctx`` proxy (Flask >= 2.2), read directly, as each lookup through the proxy
#: is a Python call; through the proxy where it is not found.
_request_context: Callable[[], RequestContext] = getattr(
    getattr(flask_globals, "_cv_request", None), "get", _proxied_request_context
)

#: Bytes per chunk when a bare file body is read (werkzeug's and gunicorn's block size).
_FILE_BLOCK = 8192

#: The identity of a request's user from its request context (``None``: not counted).
Identify = Callable[["RequestContext"], "str | None"]


def _text_identity(identify: Identify, ctx: RequestContext) -> str | None:
    """*identify*'s identity for *ctx*, as text."""
    identity = identify(ctx)
    return None if identity is None else str(identity)


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
            self._instrumentation.log.finish(slot[0], slot[1], slot[2], slot[5], slot[6])

    def measured(self) -> tuple[Measured, Callable[[], None]] | None:
        """The request's opt-in measurements and how to record them, if any."""
        slot = self._slot
        measures = self._instrumentation._measures
        if slot is None or slot[7] is None or measures is None:
            return None
        return slot[7], partial(measures.finished, slot[0], slot[7])

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


class _CountingBody(_ClosingBody):
    """A :class:`_ClosingBody` that counts the bytes it yields (``APPMETRICS_BODY_SIZES``),
    what the server was given to send however the stream ends, and records the request's
    sizes when it is closed."""

    __slots__ = ("_measured", "_record")

    def __init__(
        self,
        body: Iterable[bytes],
        end: _StreamEnd,
        measured: Measured,
        record: Callable[[], None],
    ) -> None:
        super().__init__(body, end)
        self._measured = measured
        self._record = record
        measured.counted = True

    def __iter__(self) -> Iterator[bytes]:
        measured = self._measured
        for chunk in super().__iter__():
            measured.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._record()


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
    measured = end.measured()
    if measured is not None:
        return _CountingBody(body, end, *measured)
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

    It starts the clock, gives our request steps a slot in the environ (:data:`_SLOT`) and
    logs the end of the request from what they wrote there: when ``wsgi_app`` returns, or,
    for a streamed body, when the server closes the body (``response.call_on_close`` is not
    enough: for a ``direct_passthrough`` body, ``send_file`` and static files, werkzeug
    hands the file wrapper to the server as it is, so the response's close callbacks never
    run). A request whose finalized response we never saw keeps the slot's 500 (a 500
    handler of the app that fails itself). When ``wsgi_app`` raises (a failing
    ``teardown_request``, an error re-raised under ``TESTING``, a ``BaseException`` such as
    ``SystemExit`` from a worker timeout), the server answers 500 and that is recorded.

    The first request also checks the server's worker model (:func:`_check_workers`). A
    closure, not an object with ``__call__``: the call costs less on every request.
    """
    # Weak, like the exception forwarder: the app must stay collectable. The log's
    # finish is held as it is: it never raises, and holds nothing of the app but its
    # health monitor.
    target = weakref.ref(instrumentation)
    finish = instrumentation.log.finish
    first = True

    def backstop(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal first
        if first:
            first = False
            try:
                _check_workers(environ)
            except Exception:  # pragma: no cover - a warning must never fail a request
                logger.exception("flask-appmetrics could not check the server's workers")
            live = target()
            if live is not None:
                live._decide_trace_sources()
        slot = environ[_SLOT] = [None, perf_counter(), 500, False, False, None, None, None]
        try:
            body = wsgi_app(environ, start_response)
        except BaseException:
            route = slot[0]
            if route:
                finish(route, slot[1], 500, slot[5], slot[6])
            raise
        route = slot[0]
        if route:
            if slot[3]:
                live = target()
                if live is not None:
                    try:
                        return _ending_on_close(body, _StreamEnd(live, slot), environ)
                    except Exception:  # pragma: no cover - defensive: the body still goes out
                        live._internal_error("finish")
            finish(route, slot[1], slot[2], slot[5], slot[6])
        return body

    return backstop


def _around_request_steps(
    app: Flask, before: Callable[[], None], after: Callable[[Response], Response]
) -> None:
    """Run *before* as the app's request preprocessing starts and *after* on the response
    its finalizing returns.

    ``finalize_request`` turns the view's return value into the response, runs the
    ``after_request`` hooks and saves the session; Flask calls it again with the 500 it
    sends when that fails (or when the view raised and no handler took the exception), and
    *after* then sees that 500: the last response seen is the one sent. Instance
    attributes, as ``wsgi_app`` is wrapped. The app's own steps are looked up on its class
    at each call, so that a tracer patching the class later (``Flask.finalize_request``) is
    still called; a wrapper set on the app itself before us (another extension's) is kept.
    """
    cls = type(app)
    preprocess = vars(app).get("preprocess_request")
    finalize = vars(app).get("finalize_request")

    def preprocess_request() -> Any:
        before()
        if preprocess is not None:
            return preprocess()
        return cls.preprocess_request(app)

    def finalize_request(rv: Any, from_error_handler: bool = False) -> Response:
        if finalize is not None:
            return after(finalize(rv, from_error_handler))
        return after(cls.finalize_request(app, rv, from_error_handler))

    app.preprocess_request = preprocess_request  # type: ignore[method-assign]
    app.finalize_request = finalize_request  # type: ignore[method-assign]


def _measuring(backstop: Any, measures: RequestMeasures) -> Any:
    """Wrap the backstop to record the opt-in sizes of each request (``measured``, the
    slot's last item, filled by the hooks) once it has ended: when the backstop returns,
    unless the body is counted as it is sent (then at its close, by
    :class:`_CountingBody`), or when ``wsgi_app`` raised (the server's own 500 page is
    not ours to measure)."""

    def measuring(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            body = backstop(environ, start_response)
        except BaseException:
            slot = environ.get(_SLOT)
            if slot is not None and slot[0] and slot[7] is not None:
                slot[7].response_bytes = None
                slot[7].counted = False
                measures.finished(slot[0], slot[7])
            raise
        slot = environ.get(_SLOT)
        if slot is not None and slot[0] and slot[7] is not None and not slot[7].counted:
            measures.finished(slot[0], slot[7])
        return body

    return measuring


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
    :param health: the app's health monitor: given the requests that count for health, and
        their users (identified by its :attr:`~HealthMonitor.identify` at
        ``after_request``, after every ``before_request`` hook ran, so an identity another
        hook sets is there; or when an exception propagates).
    :param route_observer: told about each finished request that counts for health, with
        its labels: ``(method, endpoint, duration_seconds, status_code)`` (the service level
        objectives count by route).
    :param observes: whether *route_observer* wants the requests of a ``(method,
        endpoint)`` pair, asked once per route when the app first serves it (``None``:
        every route's).
    :param on_internal_error: told about each failure of the instrumentation itself.
    :param label_length: the length cap of ``error_type`` values (the registry's
        ``APPMETRICS_MAX_LABEL_LENGTH``).
    :param exclusions: the views and blueprints left out (``metrics.exclude``).
    :param fold_seconds: how often, at most, the log is handed over while requests come
        (``APPMETRICS_REDIS_FLUSH_SECONDS`` when the health windows are shared; ``None``:
        the log's own interval).
    """

    def __init__(
        self,
        metric_set: MetricSet,
        settings: HttpSettings,
        *,
        own_blueprints: frozenset[str],
        health: HealthMonitor | None = None,
        route_observer: RouteObserver | None = None,
        observes: Callable[[str, str], bool] | None = None,
        on_internal_error: Callable[[str], None] | None = None,
        label_length: LabelLength | None = None,
        exclusions: Exclusions | None = None,
        fold_seconds: float | None = None,
    ) -> None:
        self._metric_set = metric_set
        self._exclude = settings.exclude_paths
        self._exclusions = exclusions if exclusions is not None else Exclusions()
        #: Route keys of excluded views, decided at their first request.
        #: Keys are (method label, rule text, view): views of one rule text (host or
        #: subdomain routing) share the labels but not their exclusion.
        self._excluded_keys: set[tuple[str, str, str]] = set()
        #: Whether requests give their trace to the duration's exemplar.
        self._exemplars = settings.exemplars
        #: The reader of the trace beyond the ``traceparent`` header (``None``: the header
        #: alone), decided at the app's first request.
        self._trace_reader: RequestTraceReader | None = None
        self._app: weakref.ref[Flask] | None = None
        #: The opt-in measurements, when the app turns any on.
        self._measures = (
            RequestMeasures(
                metric_set, body_sizes=settings.body_sizes, queue_time=settings.queue_time
            )
            if settings.body_sizes or settings.queue_time
            else None
        )
        self._own_blueprints = own_blueprints
        self._observes = observes
        self._routes: dict[tuple[str, str, str], Route] = {}
        self._errors = metric_set.counter("application_errors_total")
        self._error_type = BoundedLabel(settings.max_error_types, length=label_length)
        self._on_internal_error = on_internal_error
        # In multiprocess mode each request is written to this process's files as it
        # starts and ends; in-process, the log is folded when read.
        self._writes = FileWrites(values.ValueClass) if value_class_is_multiprocess() else None
        #: The requests not yet in the metrics and health windows.
        self.log = RequestLog(
            health,
            writes=self._writes,
            on_error=on_internal_error,
            route_observer=route_observer,
            fold_seconds=FOLD_SECONDS if fold_seconds is None else fold_seconds,
        )
        self.identify = health.identify if health is not None else None
        self._start = self.log.start
        registry_state(metric_set.registry).pending.add(self.log)
        if health is not None:
            health.add_pending(self.log.fold)

    def install(self, app: Flask) -> None:
        # Our steps run around Flask's own: before every url_value_preprocessor and
        # before_request hook (so that a hook of another extension that returns early, a
        # rate limiter or a login redirect, cannot skip ours and leave the request
        # unmeasured), and after every after_request hook and the session's saving (so
        # that we record the response the client gets, even when a hook replaced it or
        # failed into a 500). Wrapping the two steps costs less per request than two hooks
        # (Flask checks each hook for a coroutine on every call). Through Flask's setup
        # methods' check first: an app that already served requests is refused alike.
        # The steps of the opt-in measurements only when the app turns some on: the plain
        # ones then cost nothing for them.
        check = getattr(app, "_check_setup_finished", None)  # Flask's own refusal
        if check is not None:
            check("before_request")
        measures = self._measures
        before = self._before_request if measures is None else self._before_measured
        after = self._after_request if measures is None else self._after_measured
        _around_request_steps(app, before, after)
        backstop = _with_backstop(app.wsgi_app, self)
        if measures is not None and measures.body_sizes:
            backstop = _measuring(backstop, measures)
        app.wsgi_app = backstop  # type: ignore[method-assign]
        # Weakly: the trace sources are decided from the app at its first request.
        self._app = weakref.ref(app)
        forwarder = _ExceptionForwarder(self)
        got_request_exception.connect(forwarder, sender=app, weak=False)
        # The signal is process-global and holds its receiver strongly (weakly held bound
        # methods are dropped silently); the forwarder holds us weakly so the app can be
        # collected, and is disconnected with it.
        weakref.finalize(app, got_request_exception.disconnect, forwarder).atexit = False

    # -- hooks --------------------------------------------------------------------------

    def _before_request(self) -> None:
        try:
            # The request context itself: a context-local proxy costs a Python call per
            # lookup.
            req: Request = _request_context().request
            slot = req.environ.get(_SLOT)
            if slot is None:  # a request not served through the app's wsgi_app
                return
            if self._exclude:
                slot[0] = self._resolve(req)
                return
            # _resolve without its exclusions, inline: this runs on every request.
            rule = req.url_rule
            key = (
                METHOD_LABELS.get(req.method, OTHER_METHOD),
                rule.rule if rule is not None else UNMATCHED_ENDPOINT,
                rule.endpoint if rule is not None else "",
            )
            route = self._routes.get(key)
            if route is None:
                made = self._route(key, rule)
                if not isinstance(made, Route):  # an excluded view
                    slot[0] = False
                    return
                route = made
            self._start(route)
            slot[0] = route
        except Exception:
            self._internal_error("before_request")

    def _after_request(self, response: Response) -> Response:
        try:
            ctx = _request_context()
            slot = ctx.request.environ.get(_SLOT)
            if slot is not None:
                route = slot[0]
                if route is None:  # preprocessing never ran (a request_started receiver raised)
                    route = slot[0] = self._resolve(ctx.request)
                if route:
                    # Later runs overwrite: Flask runs the hooks again for the 500 it sends
                    # when saving the session fails.
                    slot[2] = response.status_code
                    slot[3] = (
                        response.direct_passthrough
                        or type(response.response) not in _COMPLETE_BODIES
                    )
                    if not slot[4] and route.in_window:
                        key_of = self._key_of
                        if key_of is not None:
                            slot[4] = True
                            try:
                                slot[5] = key_of(ctx)
                            except Exception:
                                self._unidentified()
                    if self._exemplars:
                        reader = self._trace_reader
                        environ = ctx.request.environ
                        slot[6] = environ.get(TRACEPARENT) if reader is None else reader(environ)
        except Exception:
            self._internal_error("after_request")
        return response

    def _before_measured(self) -> None:
        self._before_request()
        try:
            measures = self._measures
            req: Request = _request_context().request
            slot = req.environ.get(_SLOT)
            if slot is not None and slot[0] and measures is not None:
                measures.started(req.environ, slot)
        except Exception:
            self._internal_error("before_request")

    def _after_measured(self, response: Response) -> Response:
        response = self._after_request(response)
        try:
            measures = self._measures
            req: Request = _request_context().request
            slot = req.environ.get(_SLOT)
            if slot is not None and slot[0] and measures is not None:
                measures.responded(response, slot, req.method)
        except Exception:
            self._internal_error("after_request")
        return response

    def _on_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        # Flask's got_request_exception: an unhandled exception in this app's request.
        try:
            ctx = _request_context()
            rule = ctx.request.url_rule
            endpoint = rule.rule if rule is not None else UNMATCHED_ENDPOINT
            slot = ctx.request.environ.get(_SLOT)
            if slot is None:
                self._count_error(endpoint, exception)
            else:
                route = slot[0]
                if route is None:
                    route = slot[0] = self._resolve(ctx.request)
                if route is False:  # an excluded path or view: in no family
                    return
                self._count_error(endpoint, exception)
                if self._exemplars and slot[6] is None:
                    reader = self._trace_reader
                    environ = ctx.request.environ
                    slot[6] = environ.get(TRACEPARENT) if reader is None else reader(environ)
                # The client gets a 500: Flask's error page, or the server's when Flask
                # re-raises (TESTING, DEBUG or PROPAGATE_EXCEPTIONS), and then no
                # after_request runs: the user is noted here.
                slot[2] = 500
                key_of = self._key_of
                if (
                    route
                    and not slot[4]
                    and _propagates(sender)
                    and route.in_window
                    and key_of is not None
                ):
                    slot[4] = True
                    try:
                        slot[5] = key_of(ctx)
                    except Exception:
                        self._unidentified()
        except Exception:
            self._internal_error("got_request_exception")

    # -- internals ----------------------------------------------------------------------

    def _decide_trace_sources(self) -> None:
        """Find, once, where traces come from besides the ``traceparent`` header."""
        if self._exemplars:
            try:
                app = self._app() if self._app is not None else None
                self._trace_reader = request_trace_reader(app)
            except Exception:
                self._internal_error("before_request")

    def _route(self, key: tuple[str, str, str], rule: Rule | None) -> Route | bool:
        """The route of *key*, made and kept; ``False`` (not kept) for an excluded view."""
        if key in self._excluded_keys:
            return False
        if (
            rule is not None
            and self._exclusions
            and self._exclusions.excludes(current_app, rule.endpoint)
        ):
            self._excluded_keys.add(key)  # bounded: the app's URL rules times ten methods
            return False
        blueprint = rule.endpoint.partition(".")[0] if rule is not None else ""
        route = Route(
            self._metric_set,
            key[0],
            key[1],
            in_window=blueprint not in self._own_blueprints and self.log.health is not None,
            writes=self._writes,
        )
        observes = self._observes
        if observes is not None and route.in_window:
            try:
                route.observed = observes(key[0], key[1])
            except Exception:  # observed, then: the observer copes with it
                self._internal_error("before_request")
        # Bounded: ten method labels times the app's URL rules, plus one unmatched endpoint.
        # Two threads may build the same route: the first one stored is the one used.
        found = self._routes.setdefault(key, route)
        if found is route:
            self.log.add_route(route)
        return found

    def _resolve(self, req: Request) -> Route | bool:
        """The route of *req*, its start logged; ``False`` for an excluded path."""
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
            rule.endpoint if rule is not None else "",
        )
        route = self._routes.get(key)
        if route is None:
            made = self._route(key, rule)
            if not isinstance(made, Route):
                return False
            route = made
        self._start(route)
        return route

    @property
    def route_observer(self) -> RouteObserver | None:
        """Told about each finished request that counts for health, with its labels (the
        service level objectives); kept by the log, which finishes requests."""
        return self.log.route_observer

    @route_observer.setter
    def route_observer(self, observer: RouteObserver | None) -> None:
        # Another observer: it is given every route's requests.
        self._observes = None
        for route in list(self._routes.values()):
            route.observed = True
        self.log.route_observer = observer

    @property
    def identify(self) -> Identify | None:
        """The identity of a request's user (``None``: users are not counted)."""
        return self._identify

    @identify.setter
    def identify(self, identify: Identify | None) -> None:
        self._identify = identify
        # The default identity as a cheaper key, made text when the log is folded.
        self._key_of: Callable[[RequestContext], Hashable | None] | None = (
            None
            if identify is None
            else identity_key
            if identify is identity_of
            else partial(_text_identity, identify)
        )

    def _unidentified(self) -> None:
        logger.exception("flask-appmetrics could not note the request's user")
        count_internal_error("user_identity", self._on_internal_error)

    def _count_error(self, endpoint: str, exception: BaseException) -> None:
        self._errors.labels(endpoint, self._error_type(type(exception).__name__)).inc()

    def _internal_error(self, where: str) -> None:
        logger.exception("flask-appmetrics failed in %s; the request is unaffected", where)
        count_internal_error(where, self._on_internal_error)
