"""Validation of values that reach the extension from app code (helpers and signals).

Every check raises :class:`TypeError` (wrong type) or :class:`ValueError` (right type, bad
value) with a message that starts with the field name, so that :func:`reject` can log it
as is. Callers validate the whole payload before recording anything: bad input records
nothing, not even the call count. Under ``APPMETRICS_STRICT`` :func:`reject` raises it again
as a :class:`~flask_appmetrics.errors.StrictInputError` (still a ``TypeError`` or
``ValueError``), the one exception of a receiver that
:func:`flask_appmetrics.recording.send.send` hands to the caller.

Input is hostile as often as it is mistaken: messages show values through :func:`shown`
(a bounded repr), and :func:`reject` logs at most one line per call site per
:data:`LOG_INTERVAL_SECONDS`, so a flood of bad calls can fill neither memory nor the log.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from types import FrameType

from ..errors import StrictInputError, StrictTypeError, StrictValueError

logger = logging.getLogger("flask_appmetrics")

#: Largest count accepted: integers above 2**53 lose precision as the float a metric
#: holds, and above ~1.8e308 cannot become one at all (OverflowError while recording, or
#: at every later scrape of a gauge computed from them).
MAX_COUNT = 2**53

#: Characters of a value shown in a message (see :func:`shown`).
SHOWN_CHARACTERS = 60
#: Characters of a refusal's message that reach the log.
MAX_MESSAGE_CHARACTERS = 300
#: A call site that keeps sending bad input is logged at most once per this many seconds.
LOG_INTERVAL_SECONDS = 60.0
# Call sites remembered for rate limiting; the least recently logged is forgotten first.
_MAX_CALL_SITES = 256
# Modules whose frames are not the call site: ours, and blinker's when a signal is sent
# directly (``signals.gemini_call.send(app, ...)``).
_OWN_MODULES = ("flask_appmetrics.", "blinker.")


def shown(value: object) -> str:
    """A bounded repr of *value* for messages: never the 20 MB string a caller passed, and
    never an exception (a ``__repr__`` that raises, an int too long for ``str``)."""
    if isinstance(value, str) and len(value) > SHOWN_CHARACTERS:
        return f"{value[:SHOWN_CHARACTERS]!r}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit int"
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__} (its repr failed)"
    if len(text) > SHOWN_CHARACTERS:
        return f"{text[:SHOWN_CHARACTERS]}... (a {type(value).__name__})"
    return text


def count(field: str, value: object) -> int:
    """A non-negative integer (token counts, amounts). ``bool`` is refused: ``True`` is
    almost always a mistaken argument, not one token."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field}: expected a non-negative integer, got {shown(value)}")
    if value < 0:
        raise ValueError(f"{field}: must not be negative, got {value}")
    if value > MAX_COUNT:
        # Not the value itself: str() of an int over 4300 digits raises ValueError.
        raise ValueError(f"{field}: must be at most 2**53, got {shown(value)}")
    return value


def optional_count(field: str, value: object) -> int | None:
    return None if value is None else count(field, value)


def number(field: str, value: object, *, minimum: float | None = 0.0) -> float:
    """A finite number, at least *minimum* unless that is ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field}: expected a number, got {shown(value)}")
    if isinstance(value, int) and abs(value) > MAX_COUNT:
        # math.isfinite() would raise OverflowError on an int beyond float's range.
        raise ValueError(f"{field}: must be at most 2**53 in magnitude, got {shown(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{field}: must be finite, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field}: must be at least {minimum}, got {shown(value)}")
    return float(value)


def duration(field: str, value: object) -> float:
    """A duration in seconds: finite and not negative."""
    return number(field, value, minimum=0.0)


def optional_duration(field: str, value: object) -> float | None:
    return None if value is None else duration(field, value)


def label(field: str, value: object) -> str:
    """A label value: a non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected a string, got {shown(value)}")
    if not value:
        raise ValueError(f"{field}: must not be empty")
    return value


def optional_label(field: str, value: object) -> str | None:
    return None if value is None else label(field, value)


def choice(field: str, value: object, choices: Collection[str]) -> str:
    """One of *choices*."""
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected one of {sorted(choices)}, got {shown(value)}")
    if value not in choices:
        raise ValueError(f"{field}: expected one of {sorted(choices)}, got {shown(value)}")
    return value


def boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{field}: expected True or False, got {shown(value)}")
    return value


def reject(what: str, error: TypeError | ValueError, *, strict: bool) -> None:
    """Report bad input to *what* (a signal or helper name): raise it if *strict*, else log
    it. Either way the caller records nothing.

    :raises StrictTypeError, StrictValueError: *strict*, with *error*'s message.
    """
    if strict:
        if isinstance(error, StrictInputError):
            raise error
        strict_class = StrictTypeError if isinstance(error, TypeError) else StrictValueError
        raise strict_class(*error.args) from error
    _limiter.log(what, error)


class _RateLimitedLog:
    """Logs refusals, at most one line per call site per :data:`LOG_INTERVAL_SECONDS`.

    The call site is the first frame outside flask-appmetrics and blinker: the line of the
    app that called the helper, sent the signal or used the custom metric. A line logged
    after a quiet spell says how many refusals from that site were not logged.
    """

    def __init__(self) -> None:
        # site -> (time of the last line, refusals not logged since)
        self._sites: OrderedDict[tuple[str, int], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def log(self, what: str, error: BaseException) -> None:
        site = _call_site()
        now = time.monotonic()
        with self._lock:
            last = self._sites.get(site)
            if last is not None and now - last[0] < LOG_INTERVAL_SECONDS:
                self._sites[site] = (last[0], last[1] + 1)
                return
            suppressed = last[1] if last is not None else 0
            self._sites[site] = (now, 0)
            self._sites.move_to_end(site)
            while len(self._sites) > _MAX_CALL_SITES:
                self._sites.popitem(last=False)
        message = _bounded(str(error))
        where = f"{os.path.basename(site[0])[-80:]}:{site[1]}"
        if suppressed:
            logger.warning(
                "flask-appmetrics ignored invalid %s from %s: %s (and %d more from there in "
                "the last %.0f s, not logged)",
                what,
                where,
                message,
                suppressed,
                LOG_INTERVAL_SECONDS,
            )
        else:
            logger.warning("flask-appmetrics ignored invalid %s from %s: %s", what, where, message)

    def reset(self) -> None:
        """Forget every call site (for tests: each starts with its first line logged)."""
        with self._lock:
            self._sites.clear()


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARACTERS:
        return message
    return f"{message[:MAX_MESSAGE_CHARACTERS]}... ({len(message)} characters)"


def _call_site() -> tuple[str, int]:
    # sys._getframe is CPython's documented (underscore-named) frame access: cheap, no
    # traceback objects, and only on the refusal path; inspect.stack() would cost ms.
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_OWN_MODULES):
        frame = frame.f_back
    if frame is None:
        return ("<unknown>", 0)
    return (frame.f_code.co_filename, frame.f_lineno)


_limiter = _RateLimitedLog()


def reset_log_limits() -> None:
    """Log the next refusal of every call site (tests call it between cases)."""
    _limiter.reset()
