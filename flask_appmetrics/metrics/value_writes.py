"""Several values of this process's multiprocess files written under one lock.

In multiprocess mode every prometheus_client value is an ``MmapedValue``: a float kept in
memory and written through to this process's mmap file (``counter_<pid>.db``,
``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``; see
:mod:`flask_appmetrics.metrics.multiprocess.files`). Each ``inc()`` takes prometheus_client's
process-wide lock, checks whether the process forked since, adds, and writes the value and
a timestamp through a Python helper. A request changes four values when it ends;
:meth:`FileWrites.finished` adds to all of them under one hold of that same lock, with one
fork check, writing each value's 8 bytes in place (the timestamp of these values stays 0.0, as
``inc()`` leaves it): the same values at the same file positions, in the same format, so
every reader (prometheus_client's ``MultiProcessCollector``, ours) reads them as before,
and an ``inc()`` of another thread on one of these values (app code recording into an HTTP
family) is never lost. The bytes are assigned as one slice, as prometheus_client writes
them: ``struct.pack_into`` would zero them first, and a reader could see the 0.

The lock, the fork check and the value's fields (``_value``, ``_file``, ``_key``, and the
file's ``_m`` and ``_positions``) are prometheus_client's private API, unchanged since
multiprocess mode was added. When they are not found as expected (another value class,
another version), each value is incremented on its own with its public ``inc()``.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any

#: The fork check of prometheus_client's MmapedValue (a private, name-mangled method).
_PID_CHECK = "_MmapedValue__check_for_pid_change"
#: A value's 8 bytes in the file (prometheus_client's ``dd`` is the value, then the
#: timestamp).
_pack_value = struct.Struct("d").pack


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

    __slots__ = ("_any_value", "_lock", "_pid")

    def __init__(self, value_class: type) -> None:
        lock = _closure_lock(value_class)
        fields = all(hasattr(value_class, name) for name in (_PID_CHECK, "inc", "set", "get"))
        self._lock = lock if fields else None
        # The process the values were last checked in: a fork moves them to new files.
        self._pid = -1
        self._any_value: Any = None

    @property
    def batched(self) -> bool:
        """Whether values are written under one hold of prometheus_client's lock (else
        one ``inc()`` each)."""
        return self._lock is not None

    def _checked(self) -> None:
        """After a fork, move every value to this process's files (under the lock)."""
        pid = os.getpid()
        if self._pid != pid:
            # prometheus_client's own check reopens every value in the new pid's files (it
            # resets them all, whichever value it is called on).
            getattr(self._any_value, _PID_CHECK)()
            self._pid = pid

    def started(self, in_progress: Any) -> None:
        """One more request in progress (*in_progress*: the gauge's value)."""
        lock = self._lock
        if lock is None:
            in_progress.inc(1.0)
            return
        # acquire() and release() rather than a with statement: on CPython 3.11 that is
        # about 2,000 fewer instructions for the two holds of each request.
        lock.acquire()
        try:
            if self._pid != os.getpid():
                self._any_value = in_progress
                self._checked()
            total = in_progress._value + 1.0
            in_progress._value = total
            file = in_progress._file
            at = file._positions[in_progress._key]
            file._m[at : at + 8] = _pack_value(total)
        finally:
            lock.release()

    def finished(
        self, count: Any, duration_sum: Any, duration: float, bucket: Any, in_progress: Any
    ) -> None:
        """One request finished: *count* (its status's counter value) and *bucket* (its
        histogram bucket's) plus one, *duration* added to *duration_sum*, *in_progress*
        less one. Written one after the other, spelled out: this runs on every request."""
        lock = self._lock
        if lock is None:
            count.inc(1.0)
            duration_sum.inc(duration)
            bucket.inc(1.0)
            in_progress.inc(-1.0)
            return
        lock.acquire()
        try:
            if self._pid != os.getpid():
                self._any_value = count
                self._checked()
            total = count._value + 1.0
            count._value = total
            file = count._file
            at = file._positions[count._key]
            file._m[at : at + 8] = _pack_value(total)
            total = duration_sum._value + duration
            duration_sum._value = total
            file = duration_sum._file
            at = file._positions[duration_sum._key]
            file._m[at : at + 8] = _pack_value(total)
            total = bucket._value + 1.0
            bucket._value = total
            file = bucket._file
            at = file._positions[bucket._key]
            file._m[at : at + 8] = _pack_value(total)
            total = in_progress._value - 1.0
            in_progress._value = total
            file = in_progress._file
            at = file._positions[in_progress._key]
            file._m[at : at + 8] = _pack_value(total)
        finally:
            lock.release()
