"""Metrics of ``pybreaker`` circuit breakers.

::

    gemini_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, name="gemini")
    monitor_breaker(gemini_breaker)          # service label: the breaker's name

Keeps these true for the breaker, in the app that is current when an event happens (else
the most recently initialised one; pass ``app=`` to pin one):

* ``circuit_breaker_state{service}``: 0 closed, 1 half-open, 2 open. Set when the breaker
  is registered, for every app initialised later too, and on each state change.
* ``circuit_breaker_failures_total`` / ``circuit_breaker_successes_total{service}``: calls
  that failed / succeeded (pybreaker's own notion: excluded exceptions are successes).
* ``circuit_breaker_transitions_total{service,state}``: state changes, by state entered.
* ``circuit_breaker_rejected_calls_total{service}``: calls refused while open
  (``CircuitBreakerError`` raised without calling the function). pybreaker tells its
  listeners nothing about those, so :func:`monitor_breaker` also wraps the breaker's
  ``call`` (which its decorator and ``calling()`` use).

pybreaker moves from open to half-open lazily, on the first call after ``reset_timeout``;
the state gauge follows pybreaker's state, so it reads "open" until that call.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pybreaker

from .. import signals
from ..helpers import current_receivers, target_app
from ..recording.send import send

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger("flask_appmetrics")

_monitored: weakref.WeakSet[BreakerListener] = weakref.WeakSet()
_monitored_lock = threading.Lock()


class BreakerListener(pybreaker.CircuitBreakerListener):
    """Reports one breaker's events as :data:`~flask_appmetrics.signals.circuit_breaker_event`.

    :param breaker: the breaker (held weakly).
    :param service: the ``service`` label value.
    :param app: the app to record into; ``None`` follows the helpers' rule.
    """

    def __init__(
        self, breaker: pybreaker.CircuitBreaker, service: str, app: Flask | None = None
    ) -> None:
        self.service = service
        self._breaker = weakref.ref(breaker)
        self._app = weakref.ref(app) if app is not None else None
        self._local = threading.local()

    # -- pybreaker's listener interface ---------------------------------------------

    def before_call(
        self, cb: pybreaker.CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        self._local.calls = getattr(self._local, "calls", 0) + 1

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self._send(self._target(), event="success")

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self._send(self._target(), event="failure")

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self._send(self._target(), event="state_change", state=new_state.name)

    # -- ours --------------------------------------------------------------------------

    def wrap_call(self, breaker: pybreaker.CircuitBreaker) -> None:
        """Shadow *breaker*'s ``call`` to count calls refused while open."""
        original: Callable[..., Any] = breaker.call

        def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            before = getattr(self._local, "calls", 0)
            try:
                return original(func, *args, **kwargs)
            except pybreaker.CircuitBreakerError:
                # No listener heard of this call: the open state refused it up front. A
                # trip ("failures threshold reached") comes after before_call and a failure.
                if getattr(self._local, "calls", 0) == before:
                    self._send(self._target(), event="rejected")
                raise

        breaker.call = call  # type: ignore[method-assign]

    def report_state(self, app: Flask | None) -> None:
        """Report the breaker's current state to *app* (no transition counted)."""
        breaker = self._breaker()
        if breaker is not None and app is not None:
            self._send(app, event="state", state=breaker.current_state)

    def pinned_to(self, app: Flask) -> bool:
        """Whether this listener records into *app* only."""
        return self._app is not None and self._app() is app

    @property
    def pinned(self) -> bool:
        return self._app is not None

    def _target(self) -> Flask | None:
        if self._app is not None:
            return self._app()
        return target_app()

    def _send(self, app: Flask | None, **payload: Any) -> None:
        if app is None:
            return
        try:
            send(signals.circuit_breaker_event, app, service=self.service, **payload)
        except Exception:
            # Metrics never break the protected call (another receiver may raise).
            logger.exception("flask-appmetrics could not record a circuit breaker event")


def monitor_breaker(
    breaker: pybreaker.CircuitBreaker, *, service: str | None = None, app: Flask | None = None
) -> BreakerListener:
    """Report *breaker*'s state, successes, failures, transitions and rejected calls.

    :param service: the ``service`` label; default the breaker's ``name``.
    :param app: record into this app only; by default the current app, else the most
        recently initialised one.
    :returns: the listener added to the breaker.
    :raises ValueError: no *service* and the breaker has no name.
    """
    label = service if service is not None else breaker.name
    if not isinstance(label, str) or not label:
        raise ValueError("service: pass service= or give the CircuitBreaker a name")
    for existing in breaker.listeners:
        if isinstance(existing, BreakerListener):
            return existing
    listener = BreakerListener(breaker, label, app)
    breaker.add_listener(listener)
    listener.wrap_call(breaker)
    with _monitored_lock:
        _monitored.add(listener)
    # Report the state now if there is an app to record into (without the helpers'
    # warning: a breaker made at import time reports it when its app is initialised).
    if app is None:
        receivers = current_receivers()
        app = receivers.app if receivers is not None else None
    listener.report_state(app)
    return listener


def _report_to_new_app(sender: Flask, **_: Any) -> None:
    # Every monitored breaker reports its state to each app initialised after it.
    with _monitored_lock:
        listeners = list(_monitored)
    for listener in listeners:
        if not listener.pinned or listener.pinned_to(sender):
            listener.report_state(sender)


signals.app_initialized.connect(_report_to_new_app, weak=False)
