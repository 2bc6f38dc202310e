"""Validation of values that reach the extension from app code (helpers and signals).

Every check raises :class:`TypeError` (wrong type) or :class:`ValueError` (right type, bad
value) with a message that starts with the field name, so that :func:`reject` can log it
as is. Callers validate the whole payload before recording anything: bad input records
nothing, not even the call count. Under ``APPMETRICS_STRICT`` :func:`reject` raises it again
as a :class:`StrictInputError` (still a ``TypeError`` or ``ValueError``), the one exception
of a receiver that :func:`flask_appmetrics._send.send` hands to the caller.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection

logger = logging.getLogger("flask_appmetrics")

#: Largest count accepted: integers above 2**53 lose precision as the float a metric
#: holds, and above ~1.8e308 cannot become one at all (OverflowError while recording, or
#: at every later scrape of a gauge computed from them).
MAX_COUNT = 2**53


class StrictInputError(Exception):
    """Bad input refused under ``APPMETRICS_STRICT``: meant for the caller of the helper or
    signal, whereas any other exception of a receiver is contained. Raised as one of the
    two subclasses, so callers catch ``TypeError``/``ValueError`` as before."""


class StrictTypeError(StrictInputError, TypeError):
    """A value of the wrong type, refused under ``APPMETRICS_STRICT``."""


class StrictValueError(StrictInputError, ValueError):
    """A value of the right type but out of range, refused under ``APPMETRICS_STRICT``."""


def count(field: str, value: object) -> int:
    """A non-negative integer (token counts, amounts). ``bool`` is refused: ``True`` is
    almost always a mistaken argument, not one token."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field}: expected a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{field}: must not be negative, got {value}")
    if value > MAX_COUNT:
        # Not the value itself: str() of an int over 4300 digits raises ValueError.
        raise ValueError(f"{field}: must be at most 2**53, got a {value.bit_length()}-bit int")
    return value


def optional_count(field: str, value: object) -> int | None:
    return None if value is None else count(field, value)


def number(field: str, value: object, *, minimum: float | None = 0.0) -> float:
    """A finite number, at least *minimum* unless that is ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_COUNT:
        # math.isfinite() would raise OverflowError on an int beyond float's range.
        raise ValueError(
            f"{field}: must be at most 2**53 in magnitude, got a {value.bit_length()}-bit int"
        )
    if not math.isfinite(value):
        raise ValueError(f"{field}: must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field}: must be at least {minimum}, got {value!r}")
    return float(value)


def duration(field: str, value: object) -> float:
    """A duration in seconds: finite and not negative."""
    return number(field, value, minimum=0.0)


def optional_duration(field: str, value: object) -> float | None:
    return None if value is None else duration(field, value)


def label(field: str, value: object) -> str:
    """A label value: a non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected a string, got {value!r}")
    if not value:
        raise ValueError(f"{field}: must not be empty")
    return value


def optional_label(field: str, value: object) -> str | None:
    return None if value is None else label(field, value)


def choice(field: str, value: object, choices: Collection[str]) -> str:
    """One of *choices*."""
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected one of {sorted(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{field}: expected one of {sorted(choices)}, got {value!r}")
    return value


def boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{field}: expected True or False, got {value!r}")
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
    logger.warning("flask-appmetrics ignored invalid %s: %s", what, error)
