"""One series of a custom metric, and the prometheus_client conveniences around the value
calls: ``time()``, ``count_exceptions()``, ``track_inprogress()``, ``set_function()``.

A :class:`Series` is what ``.labels(...)`` returns (and what a metric without labels
records through). Its value calls (``inc``, ``dec``, ``set``, ``observe``) are validated
by the metric that owns it, and so are the conveniences: :class:`Timer`,
:class:`ExceptionCounter` and :class:`InprogressTracker` are context managers and
decorators like prometheus_client's, but they record through the value calls of the
object that made them, so a duration or a count goes through the same checks (and, for a
metric declared through the extension, into the registry of the app recording at that
moment, not of the app there was when the decorator ran). A decorated ``async def``
function is measured until it returns, not until its coroutine is created.

Any other attribute (``reset()`` of a counter, say) is the prometheus_client child's own,
unchecked.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

from prometheus_client import Histogram

from ..errors import StrictInputError
from ..recording import validation as check
from .registration import value_class_is_multiprocess

F = TypeVar("F", bound=Callable[..., Any])

#: Whether this prometheus_client's histograms take exemplars (counters always have).
HISTOGRAM_EXEMPLARS = "exemplar" in inspect.signature(Histogram.observe).parameters

#: Characters of an exemplar's label names and values together, at most (OpenMetrics).
MAX_EXEMPLAR_CHARACTERS = 128
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Owner(Protocol):
    """What a series asks the metric it belongs to (a ``CustomMetric``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...

    def allow(self, method: str) -> None:
        """:raises TypeError: this kind of metric has no *method*."""

    def amount(self, field: str, value: object, method: str) -> float:
        """:raises TypeError, ValueError: *value* is no amount for *method*."""

    def refuse(self, method: str, error: TypeError | ValueError) -> None:
        """Log bad input, or raise it in strict mode."""

    def failed(self) -> None:
        """Log and count a failure while recording valid input."""

    def scrape_failed(self) -> None:
        """Log and count a function of ``set_function()`` that failed."""


class _Valued(Protocol):
    """What the context managers record through: a metric or one of its series."""

    def inc(self, amount: float = 1.0) -> None: ...
    def dec(self, amount: float = 1.0) -> None: ...
    def set(self, value: float) -> None: ...
    def observe(self, value: float) -> None: ...
    def labels(self, *values: object, **by_name: object) -> Any: ...


def exemplar(value: object) -> dict[str, str]:
    """An exemplar: label names to string values, :data:`MAX_EXEMPLAR_CHARACTERS` at most.

    :raises TypeError, ValueError: naming the field ``exemplar``.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"exemplar: expected a mapping of label name to value, got {value!r}")
    characters = 0
    for name, label in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise ValueError(f"exemplar: {check.shown(name)} is not a label name")
        if not isinstance(label, str):
            raise TypeError(f"exemplar.{name}: expected a string, got {check.shown(label)}")
        characters += len(name) + len(label)
    if characters > MAX_EXEMPLAR_CHARACTERS:
        raise ValueError(
            f"exemplar: {characters} characters, more than the {MAX_EXEMPLAR_CHARACTERS} "
            "an exemplar may hold"
        )
    return dict(value)


def exception_types(value: object) -> type[BaseException] | tuple[type[BaseException], ...]:
    """What ``count_exceptions()`` may count: an exception class, or a tuple of them.

    Checked when the counter is made: ``isinstance`` would raise with anything else, when
    the block exits, into the app.

    :raises TypeError: naming the field ``exception``.
    """
    classes = value if isinstance(value, tuple) else (value,)
    if not classes or not all(
        isinstance(c, type) and issubclass(c, BaseException) for c in classes
    ):
        raise TypeError(
            f"exception: expected an exception class or a tuple of them, got {check.shown(value)}"
        )
    return cast("type[BaseException] | tuple[type[BaseException], ...]", value)


class Series:
    """One series of a custom metric (what ``.labels(...)`` returns): its value calls are
    validated; ``time()``, ``count_exceptions()``, ``track_inprogress()`` and
    ``set_function()`` are prometheus_client's, through them; anything else is the
    prometheus_client child's own.

    :param owner: the metric, or ``None`` for the series of refused labels, which records
        nothing and whose calls do nothing.
    :param child: the prometheus_client child (the metric itself when it has no labels).
    """

    __slots__ = ("child", "owner")

    def __init__(self, owner: Owner | None, child: Any) -> None:
        self.owner = owner
        self.child = child

    def _apply(self, method: str, field: str, value: object, exemplar_: object = None) -> None:
        owner = self.owner
        if owner is None:
            return  # the series of refused labels: records nothing
        try:
            amount = owner.amount(field, value, method)
            extra = {}
            if exemplar_ is not None:
                if owner.kind == "gauge":
                    raise TypeError(f"exemplar: {owner.name} is a gauge; gauges take none")
                if owner.kind == "histogram" and not HISTOGRAM_EXEMPLARS:
                    raise TypeError(
                        "exemplar: this prometheus_client takes none on histograms "
                        "(a later version does)"
                    )
                extra["exemplar"] = exemplar(exemplar_)
        except (TypeError, ValueError) as error:
            owner.refuse(method, error)
            return
        try:
            getattr(self.child, method)(amount, **extra)
        except Exception:
            owner.failed()

    def _allowed(self, method: str) -> bool:
        """Whether *method* may be called (refused, logged or raised, if not)."""
        owner = self.owner
        if owner is None:
            return False
        try:
            owner.allow(method)
        except TypeError as error:
            owner.refuse(method, error)
            return False
        return True

    # -- the value calls ---------------------------------------------------------------

    def inc(self, amount: float = 1.0, exemplar: Mapping[str, str] | None = None) -> None:
        """Add *amount*: a finite number, not negative for a counter. *exemplar* (counters):
        label names to values, such as a trace id, shown on the OpenMetrics page."""
        self._apply("inc", "amount", amount, exemplar)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount* (gauges)."""
        self._apply("dec", "amount", amount)

    def set(self, value: float) -> None:
        """Set the value (gauges)."""
        self._apply("set", "value", value)

    def observe(self, value: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Observe *value*: a finite number, not negative (histograms); *exemplar* as for
        :meth:`inc`."""
        self._apply("observe", "value", value, exemplar)

    def set_to_current_time(self) -> None:
        """Set the value to the current Unix time (gauges)."""
        if self._allowed("set_to_current_time"):
            self._apply("set", "value", time.time())

    # -- prometheus_client's conveniences, through the value calls ------------------------

    def time(self) -> Timer | NoOp:
        """Time a block or a function: observe its duration in seconds (histograms), or
        set the gauge to it."""
        if not self._allowed("time"):
            return NoOp()
        assert self.owner is not None
        return Timer(self, "set" if self.owner.kind == "gauge" else "observe")

    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> ExceptionCounter | NoOp:
        """Count the exceptions of type *exception* that leave a block or a function
        (counters)."""
        if not self._allowed("count_exceptions"):
            return NoOp()
        assert self.owner is not None
        try:
            counted = exception_types(exception)
        except TypeError as error:
            self.owner.refuse("count_exceptions", error)
            return NoOp()
        return ExceptionCounter(self, counted)

    def track_inprogress(self) -> InprogressTracker | NoOp:
        """Raise the gauge while a block or a function runs, lower it after."""
        if not self._allowed("track_inprogress"):
            return NoOp()
        return InprogressTracker(self)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the gauge's value from *function* at each scrape (see
        :func:`value_function`)."""
        if not self._allowed("set_function"):
            return
        owner = self.owner
        assert owner is not None
        try:
            reader = value_function(owner, function)
        except (TypeError, ValueError) as error:
            owner.refuse("set_function", error)
            return
        try:
            self.child.set_function(reader)
        except Exception:
            owner.failed()

    def labels(self, *values: object, **by_name: object) -> Series:
        """A series has no labels left to choose: refused (``Timer.labels`` on a series)."""
        if self.owner is not None:
            self.owner.refuse(
                "labels", ValueError(f"labels: already one series of {self.owner.name}")
            )
        return DROPPED

    def __getattr__(self, name: str) -> Any:
        if self.owner is None:
            return NoOp()
        return getattr(self.child, name)


def value_function(owner: Owner, function: object) -> Callable[[], float]:
    """*function*, read at each scrape, made safe for the page: a value that is not a
    finite number is logged and shown as NaN (the sample's "unknown"), and so is an
    exception of *function*, which is also counted in
    ``flask_appmetrics_internal_errors_total{component="scrape_value"}``. Either way the
    scrape answers, and the next one calls *function* again.

    :raises TypeError: *function* is not callable.
    :raises ValueError: prometheus_client's multiprocess mode is on, where a function is
        never read (each process's files are, and only what was set there).
    """
    if not callable(function):
        raise TypeError(f"function: expected a callable, got {check.shown(function)}")
    if value_class_is_multiprocess():
        raise ValueError(
            "set_function: has no effect in multiprocess mode (gunicorn or uWSGI workers): "
            "the page sums the values each worker set; call set() instead"
        )

    def read() -> float:
        try:
            value = function()
        except Exception:
            owner.scrape_failed()
            return math.nan
        try:
            return check.number("value", value, minimum=None)
        except (TypeError, ValueError) as error:
            # At scrape time: logged, never raised, even in strict mode.
            check.reject(f"{owner.name}.set_function", error, strict=False)
            return math.nan

    return read


class NoOp:
    """What a refused call returns: a context manager and decorator that does nothing,
    callable with anything (``.time()``, ``.track_inprogress()`` of a refused series)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]  # used as a decorator: the function, untouched
        return self

    def __enter__(self) -> NoOp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def labels(self, *values: object, **by_name: object) -> None:
        return None


class _Decorating:
    """A context manager that also decorates: each call of the function runs in a fresh
    one (so that a decorated function may run in several threads at once, or recurse)."""

    def _fresh(self) -> _Decorating:
        raise NotImplementedError

    def __enter__(self) -> Any:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def measured_async(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await function(*args, **kwargs)

            return cast("F", measured_async)

        @functools.wraps(function)
        def measured(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return cast("F", measured)


class Timer(_Decorating):
    """``time()``: records the seconds a block or a function took, through *method*
    (``observe``, or ``set`` for a gauge) of *target*. :attr:`duration` holds them after
    the block.

    On a metric with labels, choose the series inside the block, as with
    prometheus_client::

        with latency.time() as timer:
            kind = do_work()
            timer.labels(kind=kind)
    """

    def __init__(self, target: _Valued, method: str) -> None:
        self._target = target
        self._method = method
        self._start = 0.0
        #: Seconds the last block took, once it ended.
        self.duration: float | None = None

    def _fresh(self) -> Timer:
        return Timer(self._target, self._method)

    def labels(self, *values: object, **by_name: object) -> None:
        """Record into the series of these label values (see ``CustomMetric.labels``)."""
        self._target = self._target.labels(*values, **by_name)

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # perf_counter is monotonic; max() only guards a clock that is not.
        self.duration = max(time.perf_counter() - self._start, 0.0)
        record = getattr(self._target, self._method)
        if exc is None:
            record(self.duration)
            return
        # Strict mode refusing the timing (no series chosen, say) must not replace the
        # block's own exception, going on: it says more.
        with contextlib.suppress(StrictInputError):
            record(self.duration)


class ExceptionCounter(_Decorating):
    """``count_exceptions()``: adds 1 to *target* for each exception of *exception* that
    leaves the block or the function; the exception goes on."""

    def __init__(
        self, target: _Valued, exception: type[BaseException] | tuple[type[BaseException], ...]
    ) -> None:
        self._target = target
        self._exception = exception

    def _fresh(self) -> ExceptionCounter:
        return self  # holds nothing per call

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, self._exception):
            self._target.inc()


class InprogressTracker(_Decorating):
    """``track_inprogress()``: raises *target* by 1 while the block or the function runs."""

    def __init__(self, target: _Valued) -> None:
        self._target = target

    def _fresh(self) -> InprogressTracker:
        return self  # holds nothing per call

    def __enter__(self) -> None:
        self._target.inc()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._target.dec()


#: The series ``.labels(...)`` returns for refused labels: every call does nothing.
DROPPED = Series(None, None)
