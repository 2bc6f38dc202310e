"""Opt-in measurements of a request: its body sizes and its time in the proxy's queue.

Off by default; an app turns them on with ``APPMETRICS_BODY_SIZES`` (families
``http_request_size_bytes`` and ``http_response_size_bytes``, by method and endpoint) and
``APPMETRICS_QUEUE_TIME`` (``http_request_queue_seconds`` and
``http_request_queue_start_ignored_total``). Their families are registered only then, and
the request instrumentation installs the hooks that feed them only then: an app that leaves
them off pays nothing for them.

* The request's size is its ``Content-Length``; a chunked body (no length) is counted as
  the app reads it, through a counting ``wsgi.input``.
* The response's size is what the server is given to send: the body of a plain response,
  the bytes a streamed body yielded until it was closed (a stream cut short counts what
  went out), the ``Content-Length`` of a file the server sends itself (``sendfile``);
  nothing for ``HEAD``, 1xx, 204 and 304 answers, which carry no body.
* The queue time is from ``X-Request-Start`` (set by nginx as ``t=${msec}``, by Heroku's
  router in milliseconds) to the moment the app's WSGI callable was called. The value is
  ``t=`` and a Unix time, or the time alone, in seconds, milliseconds, microseconds or
  nanoseconds (told apart by magnitude). A value that cannot be read, lies in the future
  (the proxy's clock ahead of the app's) or more than :data:`MAX_QUEUE_SECONDS` in the past
  is not observed but counted by reason.
"""

from __future__ import annotations

import contextlib
import math
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import Response

from ..metrics.catalog import BODY_SIZE_SPECS, QUEUE_START_IGNORED, QUEUE_TIME_SPECS
from ..metrics.registration import declare_all

if TYPE_CHECKING:
    from ..metrics.catalog import MetricSet
    from .request_log import Route

#: Queue times above this are no queue (a stale header, a wrong unit): ignored, counted.
MAX_QUEUE_SECONDS = 300.0
#: Statuses whose answers carry no body.
_NO_BODY = frozenset({204, 304})


def request_start(header: str) -> float:
    """The Unix time, in seconds, an ``X-Request-Start`` value says.

    :raises ValueError: the value is not ``t=<number>`` or ``<number>``.
    """
    value = header.strip()
    if value[:2] in ("t=", "T="):
        value = value[2:]
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"not a request start time: {header!r}")
    # Unix times since 1973 told apart by magnitude: seconds are below 1e11 until the
    # year 5138, milliseconds below 1e14, microseconds below 1e17.
    if number < 1e11:
        return number
    if number < 1e14:
        return number / 1e3
    if number < 1e17:
        return number / 1e6
    return number / 1e9


class CountingInput:
    """A request's ``wsgi.input`` that counts the bytes read from it."""

    __slots__ = ("_stream", "count")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self.count += len(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        self.count += sum(map(len, lines))
        return lines

    def __iter__(self) -> CountingInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        # The optional reads are counted too, and exist only where the server's stream
        # has them: werkzeug's LimitedStream (an app with MAX_CONTENT_LENGTH) reads with
        # readinto when hasattr says the stream has it, else with read.
        attr = getattr(self._stream, name)
        if name in ("readinto", "readinto1"):

            def read_into(buffer: Any) -> int | None:
                size: int | None = attr(buffer)
                self.count += size or 0
                return size

            return read_into
        if name == "read1":

            def read1(*args: Any) -> bytes:
                data: bytes = attr(*args)
                self.count += len(data)
                return data

            return read1
        return attr


class Measured:
    """What is measured of one request (the slot's last item)."""

    __slots__ = ("counted", "input", "request_bytes", "response_bytes", "sent")

    def __init__(self) -> None:
        self.request_bytes = 0
        #: The counting input of a chunked body.
        self.input: CountingInput | None = None
        #: The size of the response's body, when known without sending it.
        self.response_bytes: int | None = None
        #: Whether the body's chunks are counted as sent (into :attr:`sent`).
        self.counted = False
        self.sent = 0


class RequestMeasures:
    """The opt-in measurements of one app, recorded into its registry.

    :param metric_set: the registry's catalog (its registry gets the families turned on).
    :param body_sizes: measure request and response body sizes.
    :param queue_time: measure the time since ``X-Request-Start``.
    """

    def __init__(self, metric_set: MetricSet, *, body_sizes: bool, queue_time: bool) -> None:
        specs = (
            *(BODY_SIZE_SPECS if body_sizes else ()),
            *(QUEUE_TIME_SPECS if queue_time else ()),
        )
        metrics = declare_all(metric_set.registry, specs)
        self.body_sizes = body_sizes
        self.queue_time = queue_time
        # Histograms and a counter, as declared by the specs above.
        self._request_size: Any = metrics.get("http_request_size_bytes")
        self._response_size: Any = metrics.get("http_response_size_bytes")
        self._queue: Any = metrics.get("http_request_queue_seconds")
        ignored: Any = metrics.get("http_request_queue_start_ignored_total")
        # Created at 0: increase() sees the first one.
        self._ignored: dict[str, Any] = (
            {reason: ignored.labels(reason) for reason in QUEUE_START_IGNORED}
            if ignored is not None
            else {}
        )
        self._children: dict[Route, tuple[Any, Any]] = {}

    def started(self, environ: dict[str, Any], slot: list[Any]) -> None:
        """A request of a measured route started (``before_request``)."""
        if self.queue_time:
            header = environ.get("HTTP_X_REQUEST_START")
            if header:
                # The wall-clock time the backstop started the request.
                self._observe_queue(header, time.time() - (perf_counter() - slot[1]))
        if not self.body_sizes:
            return
        measured = slot[7] = Measured()
        length = environ.get("CONTENT_LENGTH")
        if length:
            # A length that is no number: werkzeug reads no body either.
            with contextlib.suppress(ValueError):
                measured.request_bytes = max(int(length), 0)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            stream = environ.get("wsgi.input")
            if stream is not None:
                measured.input = environ["wsgi.input"] = CountingInput(stream)

    def responded(self, response: Response, slot: list[Any], method: str) -> None:
        """The response of a measured request is ready (``after_request``, maybe twice)."""
        measured = slot[7]
        if measured is None:
            return
        status = response.status_code
        if method == "HEAD" or status < 200 or status in _NO_BODY:
            measured.response_bytes = 0
        elif slot[3]:  # streamed: counted as sent; a file the server sends is its length
            measured.response_bytes = response.content_length
        else:
            measured.response_bytes = response.calculate_content_length()
            if measured.response_bytes is None:
                measured.response_bytes = response.content_length

    def finished(self, route: Route, measured: Measured | None) -> None:
        """A measured request ended: observe its sizes."""
        if measured is None:
            return
        children = self._children.get(route)
        if children is None:
            assert self._request_size is not None
            assert self._response_size is not None
            # Bounded as the routes are: ten methods times the app's URL rules.
            children = self._children[route] = (
                self._request_size.labels(route.method, route.endpoint),
                self._response_size.labels(route.method, route.endpoint),
            )
        counted_input = measured.input
        children[0].observe(
            counted_input.count if counted_input is not None else measured.request_bytes
        )
        sent = measured.sent if measured.counted else measured.response_bytes
        if sent is not None:
            children[1].observe(sent)

    def _observe_queue(self, header: str, started: float) -> None:
        try:
            queued = started - request_start(header)
        except ValueError:
            self._ignored["malformed"].inc()
            return
        if queued < 0:
            self._ignored["negative"].inc()
        elif queued > MAX_QUEUE_SECONDS:
            self._ignored["too_large"].inc()
        else:
            assert self._queue is not None
            self._queue.observe(queued)
