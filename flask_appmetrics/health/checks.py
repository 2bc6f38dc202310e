"""User health checks: their registry and a runner that a hung check cannot block.

A check is a callable taking no argument. It passes when it returns anything but
``False`` (``None`` included, so ``db.session.execute(text("SELECT 1"))`` works as a check
without a ``return``), and fails when it returns ``False``, raises, or runs past its
timeout. Pure Python: the caller passes in whatever context the checks need (Flask's
application context, for one).

Results are reused: a check that passed is not run again for its cache time
(``APPMETRICS_HEALTH_CHECK_CACHE_SECONDS``), one that failed for its failure cache time
(``APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS``, shorter, so that a recovery shows
quickly), and probes that arrive while a run is in flight wait for that run instead of
starting another. However many probes, scrapes and status pages ask, a check runs at
most once per cache time, and each result says how old it is.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

#: A health check: returns ``False`` or raises to fail; anything else passes.
CheckFunc = Callable[[], object]
F = TypeVar("F", bound=CheckFunc)


@dataclass(frozen=True)
class HealthCheck:
    """A registered check.

    :param name: key of its result in the health JSON (``database``, ``cache``...).
    :param func: the check itself.
    :param critical: a failure makes the app ``unhealthy`` (else ``degraded``).
    :param timeout: seconds before the check counts as failed; ``None`` for
        ``APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS``.
    :param cache_seconds: seconds a pass is reused before the check runs again; ``None``
        for ``APPMETRICS_HEALTH_CHECK_CACHE_SECONDS``, ``0`` to run it on every probe.
    :param failure_cache_seconds: the same after a failure; ``None`` for
        ``APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS``.
    """

    name: str
    func: CheckFunc
    critical: bool = True
    timeout: float | None = None
    cache_seconds: float | None = None
    failure_cache_seconds: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check in one health evaluation."""

    name: str
    passed: bool
    critical: bool
    #: How long the check ran (its timeout when it timed out), in seconds.
    duration_seconds: float
    #: Why it failed: ``"timeout"``, ``"returned False"`` or the exception's type name.
    #: Exception messages are logged, not returned: they can name hosts or credentials.
    error: str | None = None
    #: Seconds since this result was obtained (0 for a run this probe waited for).
    age_seconds: float = 0.0
    #: When it was obtained (``time.time()``), for the ``time`` of the IETF format.
    observed_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "pass" if self.passed else "fail",
            "critical": self.critical,
            "duration_ms": round(self.duration_seconds * 1000.0, 3),
            "age_seconds": round(self.age_seconds, 3),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class CheckRegistry:
    """Checks by name, in registration order. Registering a name again replaces it."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()

    def add(
        self,
        name: str,
        func: CheckFunc,
        *,
        critical: bool = True,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        failure_cache_seconds: float | None = None,
    ) -> HealthCheck:
        """Register *func* as the check *name* (see :class:`HealthCheck` for the options).

        :raises TypeError: *func* is not callable or *name* not a string.
        :raises ValueError: *name* is empty, *timeout* is not a positive number, or a
            cache time is not a number of seconds from 0 up.
        """
        if not isinstance(name, str):
            raise TypeError(f"health check name must be a string, got {name!r}")
        if not name:
            raise ValueError("health check name must not be empty")
        if not callable(func):
            raise TypeError(f"health check {name!r} must be callable, got {func!r}")
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"health check {name!r} must be a plain function, not async")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"health check {name!r}: timeout must be a positive number or None")
        check = HealthCheck(
            name,
            func,
            critical,
            None if timeout is None else float(timeout),
            _cache_time(name, "cache_seconds", cache_seconds),
            _cache_time(name, "failure_cache_seconds", failure_cache_seconds),
        )
        with self._lock:
            self._checks[name] = check
        return check

    def decorator(
        self,
        name: str,
        *,
        critical: bool = True,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        failure_cache_seconds: float | None = None,
    ) -> Callable[[F], F]:
        """``@registry.decorator("database")``: register the decorated function."""

        def register(func: F) -> F:
            self.add(
                name,
                func,
                critical=critical,
                timeout=timeout,
                cache_seconds=cache_seconds,
                failure_cache_seconds=failure_cache_seconds,
            )
            return func

        return register

    def remove(self, name: str) -> None:
        """Unregister the check *name* (no error if absent)."""
        with self._lock:
            self._checks.pop(name, None)

    def __iter__(self) -> Iterator[HealthCheck]:
        with self._lock:
            return iter(tuple(self._checks.values()))

    def __len__(self) -> int:
        return len(self._checks)


def _cache_time(name: str, option: str, value: float | None) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"health check {name!r}: {option} must be a number >= 0 or None")
    return float(value)


class _Flight:
    """One run of a check, shared by every probe that arrives while it runs."""

    __slots__ = ("collected", "duration", "future", "started")

    def __init__(self) -> None:
        self.future: Future[object] = Future()
        self.started = time.monotonic()
        self.duration = 0.0
        #: Whether a caller stored this run's result: until then a finished run is still
        #: the one to read (a caller arriving just as it ends must not start another).
        self.collected = False


@dataclass(frozen=True)
class _Cached:
    """A check's last result, and when it was obtained (on the runner's clock)."""

    check: HealthCheck
    result: CheckResult
    at: float


class CheckRunner:
    """Runs checks in parallel, each bounded by its timeout, and reuses their results.

    Each run gets its own daemon thread: a check that hangs forever keeps its thread, but
    never the probe (which stops waiting at the timeout) nor the process at exit. While a
    run of a check is in flight no second run of it starts; later probes wait on the same
    run, so a hung check holds exactly one thread, however often it is probed. A result is
    reused for the check's cache time (its failure cache time when it failed).

    :param default_timeout: seconds allowed to a check registered without a timeout.
    :param context: a factory for the context each check runs in (``app.app_context``).
    :param cache_seconds: how long a pass is reused, for checks without their own.
    :param failure_cache_seconds: how long a failure is reused, for checks without their own.
    :param clock: monotonic time source of the result ages.
    """

    def __init__(
        self,
        default_timeout: float,
        *,
        context: Callable[[], AbstractContextManager[Any]] | None = None,
        cache_seconds: float = 0.0,
        failure_cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_timeout = default_timeout
        self.cache_seconds = cache_seconds
        self.failure_cache_seconds = failure_cache_seconds
        self._context = context
        self._clock = clock
        self._flights: dict[str, _Flight] = {}
        self._cached: dict[str, _Cached] = {}
        self._last_passed: dict[str, bool] = {}
        self._lock = threading.Lock()

    def timeout_of(self, check: HealthCheck) -> float:
        """The seconds *check* may run before it counts as failed."""
        return check.timeout if check.timeout is not None else self.default_timeout

    def _reuse_for(self, check: HealthCheck, passed: bool) -> float:
        if passed:
            own = check.cache_seconds
            return self.cache_seconds if own is None else own
        own = check.failure_cache_seconds
        return self.failure_cache_seconds if own is None else own

    def run(self, checks: Iterable[HealthCheck]) -> tuple[CheckResult, ...]:
        """Results of *checks*, in order: reused while fresh, else run in parallel (once,
        however many callers ask at the same time); returns once each has finished or
        timed out."""
        slots: list[CheckResult | tuple[HealthCheck, _Flight]] = []
        with self._lock:
            now = self._clock()
            for check in checks:
                cached = self._cached.get(check.name)
                # A check registered again under the same name is a new check.
                if cached is not None and cached.check is check:
                    age = now - cached.at
                    if age < self._reuse_for(check, cached.result.passed):
                        slots.append(replace(cached.result, age_seconds=max(age, 0.0)))
                        continue
                flight = self._flights.get(check.name)
                # A run in flight is joined (a hung one holds one thread, however often
                # probed), and so is one that just ended but whose result nobody stored yet.
                if flight is None or (flight.future.done() and flight.collected):
                    flight = self._start(check)
                    self._flights[check.name] = flight
                slots.append((check, flight))
        return tuple(
            slot if isinstance(slot, CheckResult) else self._collect(*slot) for slot in slots
        )

    def _start(self, check: HealthCheck) -> _Flight:
        flight = _Flight()
        thread = threading.Thread(
            target=self._work,
            args=(check, flight),
            name=f"appmetrics-check-{check.name}",
            daemon=True,
        )
        thread.start()
        return flight

    def _work(self, check: HealthCheck, flight: _Flight) -> None:
        start = time.perf_counter()
        try:
            with self._context() if self._context is not None else nullcontext():
                value = check.func()
        except BaseException as exc:  # a check's failure is a result, whatever it raised
            flight.duration = time.perf_counter() - start
            if not isinstance(exc, Exception):  # SystemExit and co.: keep them off the prober
                exc = RuntimeError(f"check raised {type(exc).__name__}")
            flight.future.set_exception(exc)
        else:
            flight.duration = time.perf_counter() - start
            flight.future.set_result(value)

    def _collect(self, check: HealthCheck, flight: _Flight) -> CheckResult:
        timeout = self.timeout_of(check)
        remaining = flight.started + timeout - time.monotonic()
        error: str | None = None
        detail = ""
        try:
            value = flight.future.result(timeout=max(remaining, 0.0))
        except Exception as exc:
            if not flight.future.done():
                error, detail = "timeout", f"still running after {timeout:g} s"
            else:
                error, detail = type(exc).__name__, f"raised {type(exc).__name__}: {exc}"
        else:
            if value is False:
                error, detail = "returned False", "returned False"
        passed = error is None
        duration = timeout if error == "timeout" else flight.duration
        result = CheckResult(
            check.name, passed, check.critical, duration, error, observed_at=time.time()
        )
        with self._lock:
            flight.collected = True
            self._cached[check.name] = _Cached(check, result, self._clock())
            before = self._last_passed.get(check.name, True)
            self._last_passed[check.name] = passed
        self._log_change(check, before, passed, detail)
        return result

    @staticmethod
    def _log_change(check: HealthCheck, before: bool, passed: bool, detail: str) -> None:
        # Log transitions only: a failing check probed every few seconds must not flood logs.
        if before and not passed:
            logger.warning("health check %r failed: %s", check.name, detail)
        elif passed and not before:
            logger.info("health check %r passes again", check.name)
