"""The series of one (method, endpoint) pair in the HTTP families, updated in batches.

``http_requests_total``, ``http_request_duration_seconds`` and ``http_requests_in_progress``
stay prometheus_client's own collectors (app code records into them too, through
``FlaskMetrics.metric``, and an app's earlier definitions are adopted), but the request
instrumentation does not update them once per request: it counts requests in plain Python
and adds each changed series once per batch here (:meth:`RouteSeries.add_requests`,
:meth:`RouteSeries.add_durations`, :meth:`RouteSeries.add_in_progress`). A histogram has no
public call that adds several observations; its value objects (``_sum``, ``_buckets``, one
per upper bound in ``_upper_bounds``) are prometheus_client's private API, stable since its
first releases, and what ``Histogram.observe`` itself increments.

In multiprocess mode every value lives in this process's mmap files, which other processes
read; a request is written when it starts and when it ends (:meth:`RouteSeries.write_started`,
:meth:`RouteSeries.write_finished`), so that a request whose response went out is on the
page even if the worker dies right after. Those writes go through
:class:`~flask_appmetrics.metrics.value_writes.FileWrites`: the values of one request under
one lock, in the files prometheus_client writes, in its format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .exemplars import exemplar_key, note_exemplar
from .value_writes import FileWrites

if TYPE_CHECKING:
    from .catalog import MetricSet


class RouteSeries:
    """The pre-bound series of one (method, endpoint) pair.

    :param metric_set: the registry's catalog collectors.
    :param method: the ``method`` label.
    :param endpoint: the ``endpoint`` label (the URL rule).
    :param writes: the process's file writes, in multiprocess mode.
    """

    __slots__ = (
        "__weakref__",
        "_buckets",
        "_by_status",
        "_duration",
        "_exemplar_keys",
        "_in_progress",
        "_progress_value",
        "_requests",
        "_status_values",
        "_sum",
        "_writes",
        "bounds",
        "endpoint",
        "method",
    )

    def __init__(
        self, metric_set: MetricSet, method: str, endpoint: str, writes: FileWrites | None = None
    ) -> None:
        self.method = method
        self.endpoint = endpoint
        self._requests = metric_set.counter("http_requests_total")
        duration = metric_set.histogram("http_request_duration_seconds").labels(method, endpoint)
        # prometheus_client private API (see the module docstring): the histogram's buckets
        # and the values observe() increments.
        #: The histogram's upper bounds, ``+Inf`` last: an observation counts in the first
        #: bucket whose bound is at least its value (``bisect_left``).
        self.bounds: tuple[float, ...] = tuple(duration._upper_bounds)
        self._sum: Any = duration._sum
        self._buckets: tuple[Any, ...] = tuple(duration._buckets)
        self._duration = duration
        self._exemplar_keys: dict[int, str] = {}
        self._in_progress = metric_set.gauge("http_requests_in_progress").labels(method, endpoint)
        self._progress_value: Any = self._in_progress._value
        self._by_status: dict[int, Any] = {}
        # The counter's value object by status, for the multiprocess writes.
        self._status_values: dict[int, Any] = {}
        self._writes = writes

    def _status_child(self, status: int) -> Any:
        child = self._by_status.get(status)
        if child is None:
            child = self._requests.labels(self.method, self.endpoint, str(status))
            self._by_status[status] = child
        return child

    # -- in batches (in-process) --------------------------------------------------------

    def add_requests(self, status: int, count: int) -> None:
        """Count *count* requests answered with *status*."""
        self._status_child(status).inc(count)

    def add_durations(self, total: float, buckets: Iterable[tuple[int, int]]) -> None:
        """Observe durations adding up to *total*: ``(bucket index, count)`` pairs say how
        many fall in each bucket (index into :attr:`bounds`)."""
        self._sum.inc(total)
        for index, count in buckets:
            self._buckets[index].inc(count)

    def add_in_progress(self, delta: int) -> None:
        """Requests started minus requests finished since the last batch."""
        self._in_progress.inc(delta)

    # -- per request (multiprocess) -----------------------------------------------------

    def write_started(self) -> None:
        """One more request in progress, in this process's file now."""
        writes = self._writes
        assert writes is not None, "only in multiprocess mode"
        writes.started(self._progress_value)

    def write_finished(self, duration: float, status: int) -> None:
        """One request finished, in this process's files now: counted, observed, no longer
        in progress."""
        writes = self._writes
        assert writes is not None, "only in multiprocess mode"
        count = self._status_values.get(status)
        if count is None:
            count = self._status_values[status] = self._status_child(status)._value
        writes.finished(
            count,
            self._sum,
            duration,
            self._buckets[bisect_left(self.bounds, duration)],
            self._progress_value,
        )

    # -- exemplars (both modes) -----------------------------------------------------------

    def note_exemplar(self, trace: str, duration: float) -> None:
        """Make *trace* (a trace id, or a header holding one) the exemplar of the bucket
        *duration* falls in."""
        index = bisect_left(self.bounds, duration)
        key = None
        if self._writes is not None:
            key = self._exemplar_keys.get(index)
            if key is None:
                key = self._exemplar_keys[index] = exemplar_key(self._duration, self.bounds[index])
        note_exemplar(self._duration, trace, duration, index=index, key=key)
