"""Metrics of every call a google-genai ``Client`` makes, with no change to the calls.

::

    client = genai.Client()
    instrument_client(client)

    client.models.generate_content(model="gemini-2.5-flash", contents=prompt)   # recorded

Recorded methods, on ``client.models`` and ``client.aio.models`` (so chats, which call
them, are recorded too):

================================  ====================================================
``generate_content``              operation ``generate_content``
``generate_content_stream``       operation ``generate_content``, a stream: timed from the
                                  first chunk asked for to the last one received, with
                                  its time to first chunk and output tokens per second;
                                  ``success`` when exhausted, ``error`` if it raised,
                                  ``cancelled`` if closed (or dropped) before its end
``embed_content``                 operation ``embeddings``
``count_tokens``                  operation ``count_tokens``: its duration only (no
                                  generation, no quota, no cost)
================================  ====================================================

Each call is recorded as :func:`~flask_appmetrics.track_gemini_call` records one (the same
statuses, ``error_type`` values and quota refusals), with:

* ``endpoint``: the URL rule of the Flask request the call is made in
  (``/api/generate``); in a ``track_gemini_call`` block, the block's endpoint; outside both
  (a worker thread, a CLI command), ``APPMETRICS_GEMINI_DEFAULT_ENDPOINT``
  (``<background>``). Captured when the call is made, so a stream read after its request
  keeps it;
* ``model``: the ``model`` argument without its resource path (``models/``, or Vertex
  AI's ``projects/.../models/``);
* the provider, ``gcp.vertex_ai`` for a Vertex AI client, else ``gcp.gemini``.

The patch is on the instance (its ``models`` and ``aio.models`` objects): other clients
are untouched. Instrumenting a client again changes nothing; :func:`uninstrument_client`
removes the patch. The app recorded into is the one in context when the call is made (else
the most recently initialised one), or the ``app`` given to :func:`instrument_client`.

One rule keeps every call counted once: a call of an instrumented client is recorded by
the client. A ``track_gemini_call`` block around it records nothing itself (the client's
record takes the block's endpoint), and :func:`~flask_appmetrics.record_gemini_usage` is
for calls made without an instrumented client: called for an instrumented client's
response, it counts that call a second time.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from flask import has_request_context, request

from ...app_state import current_state
from ...helpers import current_receivers, enclosing_call, track_gemini_call
from ...llm.pricing import model_id
from ...llm.streams import track_async_iterator, track_iterator

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger("flask_appmetrics")

T = TypeVar("T")

#: The ``endpoint`` of calls made outside any request when the app sets none.
DEFAULT_ENDPOINT = "<background>"

#: Method name -> (operation, kind): ``call`` returns a response, ``stream`` an iterator.
METHODS: dict[str, tuple[str, str]] = {
    "generate_content": ("generate_content", "call"),
    "generate_content_stream": ("generate_content", "stream"),
    "embed_content": ("embeddings", "call"),
    "count_tokens": ("count_tokens", "call"),
}

# The models objects patched, and the app each records into (held weakly).
_patched: weakref.WeakKeyDictionary[Any, weakref.ref[Flask] | None] = weakref.WeakKeyDictionary()
# Marks our wrappers, with the original bound method they call.
_ORIGINAL = "__appmetrics_original__"


def instrument_client(client: T, *, app: Flask | None = None) -> T:
    """Record every call of *client* (a ``google.genai.Client``); returns the client.

    :param app: record into this app only; by default the app in context when a call is
        made, else the most recently initialised one.
    :raises TypeError: *client* has no ``models`` (not a google-genai client).
    """
    models = getattr(client, "models", None)
    if models is None:
        raise TypeError(f"client: expected a google.genai.Client, got {type(client).__name__}")
    provider = "gcp.vertex_ai" if getattr(client, "vertexai", False) else "gcp.gemini"
    pinned = weakref.ref(app) if app is not None else None
    aio = getattr(client, "aio", None)
    targets = [(models, False), (getattr(aio, "models", None), True)]
    for target, is_async in targets:
        if target is None:
            continue
        _patched[target] = pinned
        for name, (operation, kind) in METHODS.items():
            current = vars(target).get(name)
            if current is not None and hasattr(current, _ORIGINAL):
                continue  # instrumented already
            original = getattr(target, name, None)
            if original is None:
                continue  # an older google-genai without this method
            wrapper = _wrap(target, original, operation, kind, provider, is_async=is_async)
            setattr(wrapper, _ORIGINAL, original)
            setattr(target, name, wrapper)
    return client


def uninstrument_client(client: object) -> None:
    """Undo :func:`instrument_client` on *client* (no error if it was not instrumented)."""
    aio = getattr(client, "aio", None)
    for target in (getattr(client, "models", None), getattr(aio, "models", None)):
        if target is None:
            continue
        for name in METHODS:
            current = vars(target).get(name)
            if current is not None and hasattr(current, _ORIGINAL):
                delattr(target, name)
        _patched.pop(target, None)


def is_instrumented(client: object) -> bool:
    """Whether *client*'s calls are recorded."""
    models = getattr(client, "models", None)
    return models is not None and any(
        hasattr(vars(models).get(name), _ORIGINAL) for name in METHODS
    )


def _endpoint(enclosing: track_gemini_call | None) -> str:
    """The ``endpoint`` label of a call made now (see the module docstring)."""
    if enclosing is not None:
        return enclosing.endpoint
    if has_request_context():
        rule = request.url_rule
        if rule is not None:
            return rule.rule
    state = current_state()
    return state.settings.llm.default_endpoint if state is not None else DEFAULT_ENDPOINT


def _tracker(
    target: object, operation: str, provider: str, kwargs: dict[str, Any], *, stream: bool
) -> track_gemini_call:
    """A tracker for one call, made when the call is: labels and app are those of now."""
    enclosing = enclosing_call()
    model = kwargs.get("model")
    call = track_gemini_call(
        _endpoint(enclosing), model_id(model) if isinstance(model, str) and model else "unknown"
    )
    call._client_call = True
    call._operation = operation
    call._provider = provider
    call._stream = stream
    pinned = _patched.get(target)
    if pinned is not None:
        call._app = pinned()
    else:
        receivers = current_receivers()
        call._app = receivers.app if receivers is not None else None
    if enclosing is not None:
        enclosing._claimed_by_client()
    return call


def _safe_tracker(
    target: object, operation: str, provider: str, kwargs: dict[str, Any], *, stream: bool
) -> track_gemini_call | None:
    # Metrics never break the call: a tracker that cannot be made is a call not recorded.
    try:
        return _tracker(target, operation, provider, kwargs, stream=stream)
    except Exception:
        logger.exception("flask-appmetrics could not prepare the metrics of a Gemini call")
        return None


def _wrap(
    target: object,
    original: Callable[..., Any],
    operation: str,
    kind: str,
    provider: str,
    *,
    is_async: bool,
) -> Callable[..., Any]:
    if kind == "stream" and is_async:

        @functools.wraps(original)
        async def async_stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            call = _safe_tracker(target, operation, provider, kwargs, stream=True)
            if call is None:
                return await original(*args, **kwargs)  # type: ignore[no-any-return]
            try:
                inner = await original(*args, **kwargs)
            except BaseException:
                # Failed before streaming (bad arguments): a call that failed at once.
                with call:
                    raise
            return track_async_iterator(lambda: call, lambda: inner)

        return async_stream

    if kind == "stream":

        @functools.wraps(original)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            call = _safe_tracker(target, operation, provider, kwargs, stream=True)
            if call is None:
                return original(*args, **kwargs)  # type: ignore[no-any-return]
            return track_iterator(lambda: call, lambda: original(*args, **kwargs))

        return stream

    if is_async:

        @functools.wraps(original)
        async def async_call(*args: Any, **kwargs: Any) -> Any:
            call = _safe_tracker(target, operation, provider, kwargs, stream=False)
            if call is None:
                return await original(*args, **kwargs)
            with call:
                response = await original(*args, **kwargs)
                call.record_response(response)
                return response

        return async_call

    @functools.wraps(original)
    def sync_call(*args: Any, **kwargs: Any) -> Any:
        call = _safe_tracker(target, operation, provider, kwargs, stream=False)
        if call is None:
            return original(*args, **kwargs)
        with call:
            response = original(*args, **kwargs)
            call.record_response(response)
            return response

    return sync_call
