"""Several values of this process's multiprocess files written under one lock.

In multiprocess mode every prometheus_client value is an ``MmapedValue``: a float kept in
memory and written through to this process's mmap file (``counter_<pid>.db``,
``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``; see
:mod:`flask_appmetrics.metrics.multiprocess.files`). Each ``inc()`` takes prometheus_client's
process-wide lock, checks whether the process forked since, adds and writes. A request
changes four values when it ends; :meth:`FileWrites.add` does the same for all of them
under one hold of that same lock, with one fork check: the same values, the same file
positions and format, so every reader (prometheus_client's ``MultiProcessCollector``, ours)
reads them as before, and an ``inc()`` of another thread on one of these values (app code
recording into an HTTP family) is never lost.

The lock, the fork check and the value's fields (``_value``, ``_timestamp``, ``_file``,
``_key``) are prometheus_client's private API, unchanged since multiprocess mode was added.
When they are not found as expected (another value class, another version), each value
is incremented on its own with its public ``inc()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

#: The fork check of prometheus_client's MmapedValue (a private, name-mangled method).
_PID_CHECK = "_MmapedValue__check_for_pid_change"


def _closure_lock(value_class: type) -> Any:
    """The lock *value_class*'s ``inc`` holds, or ``None`` if it holds none we can find."""
    inc = getattr(value_class, "inc", None)
    code = getattr(inc, "__code__", None)
    cells = getattr(inc, "__closure__", None)
    if code is None or cells is None:
        return None
    for name, cell in zip(code.co_freevars, cells, strict=True):
        if name == "lock":
            lock = cell.cell_contents
            return lock if isinstance(lock, type(threading.Lock())) else None
    return None


class FileWrites:
    """Adds amounts to values of prometheus_client's multiprocess value class.

    :param value_class: ``prometheus_client.values.ValueClass`` (multiprocess mode's).
    """

    __slots__ = ("_lock",)

    def __init__(self, value_class: type) -> None:
        lock = _closure_lock(value_class)
        fields = all(hasattr(value_class, name) for name in (_PID_CHECK, "inc", "set", "get"))
        self._lock = lock if fields else None

    @property
    def batched(self) -> bool:
        """Whether values are written under one hold of prometheus_client's lock (else
        one ``inc()`` each)."""
        return self._lock is not None

    def add(self, changes: Iterable[tuple[Any, float]]) -> None:
        """Add each ``(value, amount)``: in memory and in the value's file."""
        lock = self._lock
        if lock is None:
            for value, amount in changes:
                value.inc(amount)
            return
        with lock:
            checked = False
            for value, amount in changes:
                if not checked:
                    # After a fork prometheus_client reopens every value in the new pid's
                    # files (the check resets them all): once per batch is enough.
                    getattr(value, _PID_CHECK)()
                    checked = True
                value._value += amount
                value._timestamp = 0.0
                value._file.write_value(value._key, value._value, 0.0)
