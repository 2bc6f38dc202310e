"""The trace a request or an LLM call belongs to, for exemplars.

Sources, in order: the active OpenTelemetry span (when OpenTelemetry traces the app: an
SDK's tracer provider set globally, or the app instrumented by
opentelemetry-instrumentation-flask; and the span is sampled), Sentry's current trace
(when Sentry is initialised: the active span's, else the trace Sentry links the
request's errors to), and the request's W3C ``traceparent`` header (sampled).

Which of the first two exist is decided once per app, at its first request
(:func:`request_trace_reader`): without them a request costs one ``environ.get`` of the
header, which is parsed only when the request ends, and only when present.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, has_app_context, has_request_context, request

from ..metrics.exemplars import trace_id

logger = logging.getLogger(__name__)

#: The WSGI environ key of the ``traceparent`` header.
TRACEPARENT = "HTTP_TRACEPARENT"

#: A source of the current trace: its trace id (a ``TraceId``), or ``None``.
TraceSource = Callable[[], "str | None"]


def _opentelemetry(app: Flask | None) -> TraceSource | None:
    """The active span's trace, when OpenTelemetry traces this process: a tracer provider
    of an SDK set globally, or *app* instrumented by opentelemetry-instrumentation-flask
    (which may be given a provider of its own). opentelemetry-api alone (installed as a
    dependency of something else) makes no source: reading its no-op span would cost every
    request for nothing."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    traced = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    if not traced and not getattr(app, "_is_instrumented_by_opentelemetry", False):
        return None
    get_current_span = trace.get_current_span

    def current() -> str | None:
        context = get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            return trace_id(format(context.trace_id, "032x"))
        return None

    return current


def _sentry() -> TraceSource | None:
    try:
        import sentry_sdk
    except ImportError:
        return None
    if not sentry_sdk.is_initialized():
        return None
    get_traceparent = sentry_sdk.get_traceparent

    def current() -> str | None:
        # "<trace id>-<span id>[-<sampled>]": none when Sentry decided not to sample.
        value = get_traceparent()
        if value is None:
            return None
        parts = value.split("-")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] == "0"):
            return None
        return trace_id(parts[0])

    return current


def trace_sources(app: Flask | None = None) -> tuple[TraceSource, ...]:
    """The sources of this process (and of *app*) besides the request's header, in order."""
    return tuple(source for source in (_opentelemetry(app), _sentry()) if source is not None)


#: Reads the trace of the request whose WSGI environ it is given.
RequestTraceReader = Callable[[dict[str, Any]], "str | None"]


def request_trace_reader(app: Flask | None) -> RequestTraceReader | None:
    """The reader of the trace of *app*'s requests from the sources present now; ``None``
    when only the ``traceparent`` header is one (the caller then reads it itself)."""
    sources = trace_sources(app)
    if not sources:
        return None

    def read(environ: dict[str, Any]) -> str | None:
        for source in sources:
            try:
                trace = source()
            except Exception:  # a tracer's failure must not cost the request
                logger.debug("flask-appmetrics could not read the current trace", exc_info=True)
                continue
            if trace is not None:
                return trace
        return environ.get(TRACEPARENT)

    return read


def current_trace() -> str | None:
    """The trace of the code running now (an LLM call): the sources in order, then the
    ``traceparent`` header of the request in context, if any."""
    for source in trace_sources(current_app if has_app_context() else None):
        try:
            trace = source()
        except Exception:
            logger.debug("flask-appmetrics could not read the current trace", exc_info=True)
            continue
        if trace is not None:
            return trace
    if has_request_context():
        return request.environ.get(TRACEPARENT)
    return None
