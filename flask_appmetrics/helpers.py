"""Module-level helpers, called from anywhere in the app's code without a handle on the
extension: ``record_cache_event(hit=True)``, ``record_gemini_usage(endpoint, model, tokens,
duration)`` and friends.

Each one sends the matching signal of :mod:`flask_appmetrics.signals` on behalf of:

* the current app, inside an app context (a request, a CLI command);
* otherwise (a worker thread, a script) the most recently initialised app that is still
  alive;
* with neither, nothing: the call is a no-op that warns once per process
  (``RuntimeWarning``), so code that records metrics runs unchanged where the extension
  is not installed.

The receivers validate the payload: bad input is logged and records nothing, or raises
``TypeError``/``ValueError`` under ``APPMETRICS_STRICT``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextlib import AbstractContextManager, nullcontext, suppress
from contextvars import ContextVar, Token
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from flask import current_app, has_app_context

from . import signals
from .app_state import current_state, state_of
from .errors import StrictInputError, count_internal_error
from .integrations.genai import errors as genai_errors
from .integrations.genai import responses as genai_responses
from .llm.streams import track_async_iterator, track_iterator
from .recording.send import send

if TYPE_CHECKING:
    from flask import Flask

    from .llm.quota import QuotaUsage
    from .recording.receivers import SignalReceivers

logger = logging.getLogger("flask_appmetrics")

P = ParamSpec("P")
R = TypeVar("R")

_warned = False
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    global _warned  # noqa: PLW0603 - once per process, by design
    with _warned_lock:
        if _warned:
            return
        _warned = True
    logger.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def target_app() -> Flask | None:
    """The app whose metrics a helper records into, or ``None`` (after warning once)."""
    receivers = current_receivers()
    app = receivers.app if receivers is not None else None
    if app is None:
        if has_app_context():
            _warn_once(
                f"flask-appmetrics is not initialised on app {current_app.name!r}: metrics "
                "recorded in its context are dropped (call FlaskMetrics().init_app(app))"
            )
        else:
            _warn_once(
                "flask-appmetrics is not initialised on any app: metrics recorded outside "
                "an app context are dropped"
            )
    return app


def current_receivers() -> SignalReceivers | None:
    """The signal receivers of :func:`~flask_appmetrics.app_state.current_state`'s app,
    without warning; their ``app`` is ``None`` once that app is collected."""
    state = current_state()
    return state.receivers if state is not None else None


def record_cache_event(hit: bool = True, operation: str = "get", layer: str | None = None) -> None:
    """Count a cache operation in ``cache_operations_total{operation,result}``.

    :param hit: ``True`` for a hit, ``False`` for a miss.
    :param operation: ``"get"`` (the one ``cache_hit_rate`` is computed from), ``"set"``...
    :param layer: the cache layer (``"memory"``, ``"redis"``), also counted in
        ``cache_layer_operations_total{layer,operation,result}``.
    """
    app = target_app()
    if app is not None:
        send(signals.cache_event, app, hit=hit, operation=operation, layer=layer)


def record_gemini_usage(
    endpoint: str,
    model: str,
    tokens: int | None = None,
    duration: float | None = None,
    status: str = "success",
    *,
    usage_metadata: object = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    thoughts_tokens: int | None = None,
    cached_tokens: int | None = None,
    error_type: str | None = None,
    time_to_first_chunk: float | None = None,
) -> None:
    """Record one Gemini API call (made without an instrumented client: a call of a client
    given to :func:`~flask_appmetrics.integrations.genai.instrument_client` is recorded
    already, and recording it here counts it twice).

    ::

        response = client.models.generate_content(model=model, contents=prompt)
        record_gemini_usage("/api/generate", model, duration=elapsed, usage_metadata=response)

    Counts ``gemini_api_calls_total``, observes ``gemini_api_duration_seconds``, adds the
    tokens to ``gemini_api_tokens_total``, the breakdown to
    ``gemini_api_token_usage_total{token_type}`` and the estimated cost to
    ``gemini_api_cost_usd_total`` (and today's spend), counts the finish reasons of a
    response, records the OpenTelemetry ``gen_ai_*`` instruments, and counts the call and
    its tokens against the quota.

    :param endpoint: the app endpoint the call served (a label: keep it a route, not a URL).
    :param model: the model name.
    :param tokens: the call's total tokens, if known (else taken from *usage_metadata* or
        the sum of the breakdown).
    :param duration: the call's duration in seconds.
    :param status: ``"success"``, ``"error"``, ``"cancelled"`` (a stream abandoned early) or
        ``"rejected"`` (refused before reaching the API, by a circuit breaker: counted in
        ``gemini_api_rejected_calls_total`` only).
    :param usage_metadata: a google-genai ``GenerateContentResponse`` (for the token
        breakdown, the finish reasons and the model version) or its ``usage_metadata``.
    :param input_tokens: prompt tokens (cached ones included), overriding *usage_metadata*.
    :param output_tokens: response tokens, overriding *usage_metadata*.
    :param thoughts_tokens: thinking tokens, overriding *usage_metadata*.
    :param cached_tokens: prompt tokens served from the context cache.
    :param error_type: for an ``"error"``, what failed (see
        :mod:`flask_appmetrics.integrations.genai.errors`: ``RESOURCE_EXHAUSTED``,
        ``timeout``...; another value counts as ``_OTHER``). Default ``_OTHER``.
    :param time_to_first_chunk: for a stream, seconds from the request to its first chunk.
    """
    extra: dict[str, Any] = {}
    if error_type is not None:
        extra["error_type"] = error_type
    if time_to_first_chunk is not None:
        extra["time_to_first_chunk"] = time_to_first_chunk
    app = target_app()
    if app is not None:
        send(
            signals.gemini_call,
            app,
            endpoint=endpoint,
            model=model,
            status=status,
            duration=duration,
            tokens=tokens,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            thoughts_tokens=thoughts_tokens,
            cached_tokens=cached_tokens,
            usage_metadata=usage_metadata,
            **extra,
        )


def record_circuit_breaker_event(service: str, event: str, state: str | None = None) -> None:
    """Record a circuit breaker event (for breakers other than pybreaker's, which
    :mod:`flask_appmetrics.integrations.pybreaker` reports on its own).

    :param service: the protected service.
    :param event: ``"success"``, ``"failure"``, ``"rejected"`` (refused while open),
        ``"state_change"`` (entered *state*) or ``"state"`` (is in *state*; no transition).
    :param state: ``"closed"``, ``"half_open"`` or ``"open"``, for the two state events.
        ``circuit_breaker_state`` encodes them as 0, 1 and 2.
    """
    app = target_app()
    if app is not None:
        send(signals.circuit_breaker_event, app, service=service, event=event, state=state)


def record_quota_usage(requests: int = 1, tokens: int = 0) -> None:
    """Count API usage against the quota, for calls not recorded with
    :func:`record_gemini_usage` (which counts them already)."""
    app = target_app()
    if app is not None:
        send(signals.quota_usage, app, requests=requests, tokens=tokens)


def record_business_event(
    metric: str, value: float = 1, labels: Mapping[str, str] | None = None
) -> None:
    """Record into a metric the app declared with ``metrics.counter``/``gauge``/
    ``histogram``, by name: add *value* to a counter, set a gauge to it, observe it in a
    histogram. Lets library code report business events without importing the metric.

    ::

        record_business_event("images_generated_total", labels={"source": "ai"})
    """
    app = target_app()
    if app is not None:
        send(signals.business_event, app, metric=metric, value=value, labels=labels)


def quota_usage() -> QuotaUsage | None:
    """The current quota usage of the helpers' target app (see the module docstring)."""
    receivers = current_receivers() if target_app() is not None else None
    return receivers.series.quota.usage() if receivers is not None else None


#: The keys of ``/api/health`` besides ``status`` that clients have always read, when
#: there is nothing to report.
_ZERO_SUMMARY: dict[str, Any] = {
    "recent_errors_5min": 0,
    "avg_response_time_ms": 0.0,
    "concurrent_users": 0,
}


def get_health_status() -> dict[str, Any]:
    """The health of the current app, as ``GET /api/health`` reports it.

    Inside an application context: that app's; outside one (a worker thread, a CLI job):
    the most recently initialised app's. Runs the registered checks, so it may take up to
    the longest check timeout. With no app initialised it warns (once per call site) and
    returns ``"status": "unknown"`` with ``recent_errors_5min``, ``avg_response_time_ms``
    and ``concurrent_users`` at zero. Never raises: when the evaluation itself fails (a
    broken window) it logs, counts an internal error and returns ``"status":
    "unhealthy"`` with ``"error": "internal"`` beside those three keys at zero.
    """
    state = current_state()
    if state is None:
        warnings.warn(
            "get_health_status(): no Flask app has been initialised with flask-appmetrics",
            RuntimeWarning,
            stacklevel=2,
        )
        return {"status": "unknown", **_ZERO_SUMMARY}
    try:
        return state.health.evaluate().as_dict()
    except Exception:
        logger.exception("flask-appmetrics failed to evaluate health for get_health_status()")
        count_internal_error("health", state.metric_set.count_internal_error)
        return {"status": "unhealthy", "error": "internal", **_ZERO_SUMMARY}


def _context_app() -> Flask | None:
    """The app in context if the extension records for it, without warning."""
    receivers = current_receivers() if has_app_context() else None
    return receivers.app if receivers is not None else None


#: The ``track_gemini_call`` of the app code running now (a ``with`` block, a decorated
#: function, or the pull of a decorated stream), which an instrumented client's call made
#: inside it supersedes (:meth:`track_gemini_call._claimed_by_client`).
_enclosing: ContextVar[track_gemini_call | None] = ContextVar(
    "flask_appmetrics_gemini_call", default=None
)


class track_gemini_call:  # lower case: used like a function (context manager, decorator)
    """Time a Gemini call and record it: ``"success"``, ``"error"`` (an exception),
    ``"cancelled"`` (a stream closed before its end, a cancelled task) or ``"rejected"`` (a
    pybreaker circuit breaker refused the call: it never reached the API).

    As a context manager, hand it the response for the token counts::

        with track_gemini_call("/api/generate", "gemini-2.5-flash") as call:
            response = client.models.generate_content(model=..., contents=prompt)
            call.record_response(response)

    ``async with`` works too. As a decorator (of a function or a coroutine function), the
    return value's ``usage_metadata`` is used if it has one::

        @track_gemini_call("/api/generate", "gemini-2.5-flash")
        def generate(prompt: str) -> types.GenerateContentResponse: ...

    A decorated generator or async generator function (streaming, as with
    ``generate_content_stream``) is timed from its first item requested to its last item:
    the call is a ``"success"`` once the stream is exhausted, an ``"error"`` if it raises,
    and ``"cancelled"`` if it is closed early (the consumer stops and calls ``close()`` or
    ``aclose()``, or drops it and it is garbage-collected). The last item with a
    ``usage_metadata`` gives the token counts (Gemini's last chunk carries the totals); the
    time to the first item is recorded as the time to first chunk, and a stream that ran
    to its end its output tokens per second.

    A failure is recorded with its ``error_type`` (see
    :mod:`flask_appmetrics.integrations.genai.errors`): a google-genai ``APIError`` by its
    status (``RESOURCE_EXHAUSTED`` for a 429, which also counts as a quota refusal),
    timeouts, connection errors. A pybreaker ``CircuitBreakerError`` raised because the
    breaker is open is no Gemini call: it is counted in ``gemini_api_rejected_calls_total``,
    uses no quota and has no duration. (The ``CircuitBreakerError`` pybreaker raises when
    the call that just failed trips the breaker is that call's failure.)

    Inside the block (or the decorated function or stream), calls of a client instrumented
    with :func:`~flask_appmetrics.integrations.genai.instrument_client` are recorded by the
    client, each once, with this block's endpoint; the block then records nothing itself,
    so a call is never counted twice.

    The call records into the app in context when it starts (else, as any helper, the most
    recently initialised app), so a stream finished after its request still counts there.
    The exception, if any, propagates unchanged: under ``APPMETRICS_STRICT`` a bad payload
    raises only when the block itself did not (otherwise it is logged).
    """

    def __init__(self, endpoint: str, model: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self._counts: dict[str, Any] = {}
        self._start: float | None = None
        self._app: Flask | None = None
        self._token: Token[track_gemini_call | None] | None = None
        # Set by an instrumented client for its own calls (see integrations.genai.client).
        self._client_call = False
        self._operation = "generate_content"
        self._provider = "gcp.gemini"
        # A stream's timing, and what its chunks said.
        self._stream = False
        self._first: float | None = None
        self._last: float | None = None
        self._reasons: tuple[str, ...] = ()
        self._response_model: str | None = None
        self._superseded = False

    def record_response(self, response: object) -> None:
        """Use *response* (or its ``usage_metadata``) for the token counts, and its finish
        reasons and model version."""
        # Some responses carry no token counts at all (the embedding responses of older
        # google-genai releases have no usage_metadata): the call is still recorded.
        if hasattr(response, "usage_metadata"):
            self._counts["usage_metadata"] = response
        self._note_facts(response)

    def usage(
        self,
        *,
        tokens: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        thoughts_tokens: int | None = None,
        cached_tokens: int | None = None,
        usage_metadata: object = None,
    ) -> None:
        """Give the call's token counts (as :func:`record_gemini_usage` takes them)."""
        given = {
            "tokens": tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "thoughts_tokens": thoughts_tokens,
            "cached_tokens": cached_tokens,
            "usage_metadata": usage_metadata,
        }
        self._counts.update({key: value for key, value in given.items() if value is not None})
        if usage_metadata is not None:
            self._note_facts(usage_metadata)

    def _note_facts(self, response: object) -> None:
        try:
            facts = genai_responses.describe(response)
        except Exception:  # an odd object: its facts are not worth failing the call
            return
        if facts.finish_reasons:
            self._reasons = facts.finish_reasons
        if facts.response_model is not None:
            self._response_model = facts.response_model

    def _note(self, item: object) -> None:
        if getattr(item, "usage_metadata", None) is not None:
            self._counts["usage_metadata"] = item
        self._note_facts(item)

    # -- the stream tracker interface (flask_appmetrics.llm.streams) ---------------------

    def chunk(self, item: object) -> None:
        """A streamed chunk arrived."""
        now = perf_counter()
        if self._first is None:
            self._first = now
        self._last = now
        self._note(item)

    def resumed(self) -> AbstractContextManager[Any]:
        """The context of each pull from a stream: this call encloses what runs in it (a
        client's own calls are its own business: nothing to enclose)."""
        return nullcontext() if self._client_call else _Enclosing(self)

    def _claimed_by_client(self) -> None:
        """An instrumented client's call inside this block: that call is recorded by the
        client; this block records nothing."""
        self._superseded = True

    # -- timing and recording ---------------------------------------------------------------

    def __enter__(self) -> track_gemini_call:
        if self._app is None:
            self._app = _context_app()
        if not self._stream and not self._client_call:
            self._token = _enclosing.set(self)
        self._start = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        end = perf_counter()
        if self._token is not None:
            token, self._token = self._token, None
            # Exited in another context than entered: nothing to undo there.
            with suppress(ValueError):
                _enclosing.reset(token)
        app, self._app = self._app, None
        if self._superseded:
            return  # the client recorded the call(s) made in this block
        app = app if app is not None else target_app()
        if app is None:
            return
        try:
            payload = self._payload(exc, end)
        except Exception:
            # Our own bug must not replace the block's outcome: log, count, move on.
            logger.exception("flask-appmetrics failed to describe a Gemini call")
            count_internal_error("gemini_call", _error_counter(app))
            return
        try:
            send(signals.gemini_call, app, endpoint=self.endpoint, model=self.model, **payload)
        except StrictInputError:
            if exc_type is None:
                raise
            # The block's own exception is the one to see: a strict-mode refusal of our
            # payload would replace it (chained as its __context__, easily missed).
            logger.exception(
                "flask-appmetrics refused the Gemini call of a block that raised %s; "
                "that exception propagates",
                exc_type.__name__,
            )

    def _payload(self, exc: BaseException | None, end: float) -> dict[str, Any]:
        start = self._start if self._start is not None else end
        payload: dict[str, Any] = dict(self._counts)
        if self._client_call:
            payload["operation"] = self._operation
            payload["provider"] = self._provider
        if exc is None:
            payload["status"] = "success"
            if self._stream and self._last is not None:
                end = self._last  # timed to the last chunk, not to the consumer's last pull
        elif isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            # Closed by its consumer or cancelled with its task: not a failure of the API.
            payload["status"] = "cancelled"
        else:
            failure = genai_errors.describe(exc)
            if failure.rejected:
                return {"status": "rejected"}
            payload["status"] = "error"
            payload["error_type"] = failure.error_type
            if failure.refusal is not None:
                payload["refused_limit"] = failure.refusal.limit
                payload["refused_value"] = failure.refusal.value
        payload["duration"] = max(end - start, 0.0)
        if self._first is not None:
            payload["time_to_first_chunk"] = min(max(self._first - start, 0.0), payload["duration"])
        if self._reasons and "finish_reasons" not in payload:
            payload["finish_reasons"] = self._reasons
        if self._response_model is not None:
            payload["response_model"] = self._response_model
        return payload

    async def __aenter__(self) -> track_gemini_call:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        endpoint, model = self.endpoint, self.model

        def stream_call() -> track_gemini_call:
            call = track_gemini_call(endpoint, model)
            call._stream = True
            return call

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            def async_stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
                return track_async_iterator(stream_call, lambda: func(*args, **kwargs))

            return cast("Callable[P, R]", async_stream)
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def stream(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                return track_iterator(stream_call, lambda: func(*args, **kwargs))

            return cast("Callable[P, R]", stream)
        if inspect.iscoroutinefunction(func):
            # google-genai's async client (client.aio): time the awaited call, not the
            # creation of the coroutine.
            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with track_gemini_call(endpoint, model) as call:
                    result = await func(*args, **kwargs)
                    call._note(result)
                    return result

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # A fresh tracker per call: the decorated function may run concurrently.
            with track_gemini_call(endpoint, model) as call:
                result = func(*args, **kwargs)
                call._note(result)
                return result

        return wrapper


class _Enclosing:
    """Makes *call* the enclosing call while one pull of its stream runs."""

    __slots__ = ("_call", "_token")

    def __init__(self, call: track_gemini_call) -> None:
        self._call = call
        self._token: Token[track_gemini_call | None] | None = None

    def __enter__(self) -> None:
        self._token = _enclosing.set(self._call)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _enclosing.reset(self._token)


def enclosing_call() -> track_gemini_call | None:
    """The :class:`track_gemini_call` of the app code running now, if any (for the
    instrumented client, which records its calls in its place)."""
    return _enclosing.get()


def _error_counter(app: Flask) -> Callable[[str], None] | None:
    state = state_of(app)
    return state.metric_set.count_internal_error if state is not None else None
