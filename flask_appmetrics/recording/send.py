"""Sending our signals so that no receiver can break the sender or the other receivers.

blinker's ``Signal.send`` stops at the first receiver that raises and hands its exception
to the sender. Our signals also reach receivers of the app's own (an audit log, say); one
of those that raises must neither fail the caller of ``record_cache_event`` (a request, a
cache read) nor keep the extension's receivers from recording. :func:`send` calls each
receiver on its own: a failure of another receiver is logged and counted in
``flask_appmetrics_internal_errors_total{component="signal_receiver"}``; the extension's
own receivers never raise except with ``APPMETRICS_STRICT``, and that error (a
:class:`~flask_appmetrics.errors.StrictInputError`, which no other receiver raises
unless it got bad input to our helpers under the same setting) does reach the caller, after
every other receiver ran.
"""

from __future__ import annotations

import logging
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, cast

from ..errors import StrictInputError, count_internal_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from blinker import NamedSignal
    from flask import Flask

logger = logging.getLogger("flask_appmetrics")


def send(signal: NamedSignal, app: Flask, **payload: Any) -> None:
    """Send *signal* for *app* to every receiver, each isolated from the others' failures.

    :raises StrictTypeError, StrictValueError: a receiver refused the payload in strict
        mode (a ``TypeError``/``ValueError``; see :mod:`flask_appmetrics.recording.validation`).
    """
    if signal.is_muted:
        return
    strict_error: StrictInputError | None = None
    for receiver in signal.receivers_for(app):
        if iscoroutinefunction(receiver):
            logger.warning(
                "flask-appmetrics skipped async receiver %r of signal %r: blinker cannot "
                "call it without an event loop",
                receiver,
                signal.name,
            )
            continue
        try:
            receiver(app, **payload)
        except StrictInputError as error:
            strict_error = strict_error or error  # strict mode: the caller's to see
        except Exception:
            _receiver_failed(app, signal, receiver)
    if strict_error is not None:
        raise strict_error


def _receiver_failed(app: Flask, signal: NamedSignal, receiver: object) -> None:
    logger.exception(
        "flask-appmetrics: receiver %r of signal %r raised; the event was still recorded "
        "and the caller is unaffected",
        receiver,
        signal.name,
    )
    counter = _internal_error_counter(signal, app)
    if counter is not None:
        count_internal_error("signal_receiver", counter)


def _internal_error_counter(signal: NamedSignal, app: Flask) -> Callable[[str], None] | None:
    """The internal-error counter of *app*'s metrics, offered by the extension's own
    receiver of *signal* for *app* (a bound method whose object has
    ``count_internal_error``); ``None`` when the extension does not receive it there.
    Duck-typed, so that sending needs neither the receivers' module nor the app's state."""
    for receiver in signal.receivers_for(app):
        counter = getattr(getattr(receiver, "__self__", None), "count_internal_error", None)
        if callable(counter):
            return cast("Callable[[str], None]", counter)
    return None
