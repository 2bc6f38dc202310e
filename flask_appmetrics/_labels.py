"""Label values that stay bounded whatever clients send."""

from __future__ import annotations

import threading
from collections.abc import Iterable

#: ``endpoint`` label of every request that matched no URL rule (404, 405, redirects).
UNMATCHED_ENDPOINT = "<unmatched>"
#: ``method`` label of every method outside the standard set (OpenTelemetry's ``_OTHER``).
OTHER_METHOD = "_OTHER"
#: Value a :class:`BoundedLabel` gives once it has seen its maximum of distinct values.
OVERFLOW_VALUE = "other"

_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
#: Maps a request method to its label: the standard ones to themselves.
METHOD_LABELS: dict[str, str] = {m: m for m in _STANDARD_METHODS}


class BoundedLabel:
    """Admits label values up to a cap, then maps every new value to one overflow value.

    Used for label values that come from input (error types, model names from requests,
    custom business labels): the first *limit* distinct values are kept as they are, so the
    series count of any family using it is bounded by construction.

    :param limit: how many distinct values to keep.
    :param allowed: if given, only these values are admitted; the cap does not apply.
    :param overflow: the value every other input is mapped to.
    """

    __slots__ = ("_allowed", "_lock", "_seen", "limit", "overflow")

    def __init__(
        self,
        limit: int,
        *,
        allowed: Iterable[str] | None = None,
        overflow: str = OVERFLOW_VALUE,
        initial: Iterable[str] = (),
    ) -> None:
        self.limit = limit
        self.overflow = overflow
        self._allowed = frozenset(allowed) if allowed is not None else None
        self._seen: set[str] = set(initial)
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if self._allowed is not None:
            return value if value in self._allowed else self.overflow
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return self.overflow
            self._seen.add(value)
            return value
