"""Label values that stay bounded whatever clients send."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

#: ``endpoint`` label of every request that matched no URL rule (404, 405, redirects).
UNMATCHED_ENDPOINT = "<unmatched>"
#: ``method`` label of every method outside the standard set (OpenTelemetry's ``_OTHER``).
OTHER_METHOD = "_OTHER"
#: Value a :class:`BoundedLabel` gives once it has seen its maximum of distinct values.
OVERFLOW_VALUE = "other"

#: Default of ``APPMETRICS_MAX_LABEL_LENGTH``: the UTF-8 bytes a label value may hold.
DEFAULT_MAX_LABEL_LENGTH = 128
#: Smallest ``APPMETRICS_MAX_LABEL_LENGTH``: room for a few characters before the suffix.
MIN_MAX_LABEL_LENGTH = 16
#: What a capped value ends with: ``~`` and 8 hex digits of the BLAKE2b hash of the whole value.
_SUFFIX_LENGTH = 1 + 8

_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
#: Maps a request method to its label: the standard ones to themselves.
METHOD_LABELS: dict[str, str] = {m: m for m in _STANDARD_METHODS}


def cap_length(value: str, max_length: int) -> str:
    """*value* if its UTF-8 encoding fits in *max_length* bytes, else a shorter stand-in.

    The stand-in is the longest prefix of *value* that fits in ``max_length - 9`` bytes,
    then ``~`` and the first 8 hex digits of the BLAKE2b hash of all of *value*:
    ``"aaaa...~1f0c9a3e"``, at most *max_length* bytes. The hash keeps distinct long values
    apart and maps one value to the same label in every process (gunicorn workers), unlike
    ``hash()``. A value with lone surrogates (no exposition format can encode them, and one
    would break every later scrape) gets a stand-in too, with ``?`` in their place.
    """
    if len(value) <= max_length and value.isascii():
        return value  # the common case, without encoding anything
    if len(value) <= max_length:
        # Short enough in characters; bytes decide (up to 4 per character).
        try:
            if len(value.encode("utf-8")) <= max_length:
                return value
        except UnicodeEncodeError:
            pass
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    room = max_length - _SUFFIX_LENGTH
    # Only the characters that can fit are encoded: a 20 MB value costs its hash, no copy.
    head = value[:room].encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
    return f"{head}~{digest}"


class LabelLength:
    """The length cap of the label values of one registry (``APPMETRICS_MAX_LABEL_LENGTH``),
    shared by every label of the registry so that a change of setting reaches them all.

    :param max_length: UTF-8 bytes a value may hold; see :func:`cap_length`.
    """

    __slots__ = ("max_length",)

    def __init__(self, max_length: int = DEFAULT_MAX_LABEL_LENGTH) -> None:
        self.max_length = max_length

    def __call__(self, value: str) -> str:
        return cap_length(value, self.max_length)


class BoundedLabel:
    """Admits label values up to a cap, then maps every new value to one overflow value.

    Used for label values that come from input (error types, model names from requests,
    custom business labels): the first *limit* distinct values are kept as they are, so the
    series count of any family using it is bounded by construction. Each value is first
    capped in length (:func:`cap_length`), so its size is bounded too; a capped value takes
    one of the *limit* places like any other.

    :param limit: how many distinct values to keep.
    :param allowed: if given, only these values are admitted (every other one becomes
        :data:`OVERFLOW_VALUE`); the cap does not apply.
    :param length: the length cap; :data:`DEFAULT_MAX_LABEL_LENGTH` bytes if ``None``.
    """

    __slots__ = ("_allowed", "_lock", "_seen", "length", "limit")

    def __init__(
        self,
        limit: int,
        *,
        allowed: Iterable[str] | None = None,
        length: LabelLength | None = None,
    ) -> None:
        self.limit = limit
        self.length = length if length is not None else LabelLength()
        self._allowed = frozenset(allowed) if allowed is not None else None
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if self._allowed is not None:
            # Allowed values are the app's own; capped too, should one be that long.
            return self.length(value) if value in self._allowed else OVERFLOW_VALUE
        return self.admit(self.length(value))

    def kept(self, value: str) -> str | None:
        """What *value* maps to now, without admitting it: its capped self if kept (or
        allowed), :data:`OVERFLOW_VALUE` for that value itself, else ``None`` (no series
        can have it)."""
        capped = self.length(value)
        if capped in (self._allowed if self._allowed is not None else self._seen):
            return capped
        return OVERFLOW_VALUE if value == OVERFLOW_VALUE else None

    def forget(self, value: str) -> None:
        """Give *value*'s place back (its series were removed): a new value may take it."""
        with self._lock:
            self._seen.discard(value)

    def admit(self, value: str) -> str:
        """Map *value*, already capped in length, into the bounded set."""
        if self._allowed is not None:
            return value if value in self._allowed else OVERFLOW_VALUE
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return OVERFLOW_VALUE
            self._seen.add(value)
            return value


class PinnedLabel:
    """A :class:`BoundedLabel` whose configured (pinned) values are always kept as they are
    and do not use up the cap. Every value, pinned ones included, is capped in length."""

    def __init__(self, limit: int, length: LabelLength | None = None) -> None:
        self._pinned: frozenset[str] = frozenset()
        self._others = BoundedLabel(limit, length=length)
        self._length = self._others.length
        self._lock = threading.Lock()

    def pin(self, values: Iterable[str]) -> None:
        with self._lock:
            self._pinned = self._pinned | frozenset(self._length(value) for value in values)

    def set_limit(self, limit: int) -> None:
        """Keep up to *limit* unpinned values from now on (those already kept stay)."""
        self._others.limit = limit

    def __call__(self, value: str) -> str:
        value = self._length(value)
        return value if value in self._pinned else self._others.admit(value)
