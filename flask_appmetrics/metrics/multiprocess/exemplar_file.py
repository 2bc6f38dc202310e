"""Exemplars in multiprocess mode: one small file per process, read at scrape time.

prometheus_client's multiprocess values keep no exemplar (``MmapedValue.set_exemplar`` does
nothing), so each process keeps the latest exemplar of each histogram bucket it observed
in ``flask_appmetrics.exemplars.<pid>`` next to its metric files, and the scrape takes,
for each bucket, the latest one among all processes
(:func:`read_exemplars`).

The file is mapped like prometheus_client's own: an 8-byte header whose first 4 bytes say
how many bytes are used, then one record per bucket: the key's length (4 bytes), the key
(UTF-8 JSON of the sample name and its labels, ``le`` included) padded to 8 bytes, and a
40-byte payload: the trace id (16 bytes), the observed value and its Unix time (two
doubles) and a CRC-32 of those 32 bytes. A bucket's record is written in place when it
gets a later exemplar. A reader in another process may read a payload while it is being
rewritten: the checksum tells, and that bucket's exemplar is left out of that scrape. A new
record is written whole before the header counts it.

Only the process that owns a file writes it (under a lock, for its threads); a file whose
process has exited and whose metric files are gone is deleted by the next scrape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator

from .files import EXEMPLARS_PREFIX, HEADER_BYTES, parse_name

logger = logging.getLogger(__name__)

#: The directory prometheus_client's multiprocess mode writes in (read as it reads it).
_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_NAME = re.compile(re.escape(EXEMPLARS_PREFIX) + r"(?P<pid>[0-9]{1,10})\Z")

_INT = struct.Struct("i")
#: trace id, value, timestamp
_PAYLOAD = struct.Struct("16sdd")
#: the payload, its CRC-32 and 4 bytes of padding
_RECORD = struct.Struct("16sddI4x")
_CRC = struct.Struct("I4x")
_INITIAL_BYTES = 4096

#: ``(sample name, sorted labels)`` of a bucket sample.
BucketKey = tuple[str, tuple[tuple[str, str], ...]]
#: trace id (32 hex digits), value, Unix time
Stored = tuple[str, float, float]


def bucket_key(sample: str, labels: dict[str, str]) -> str:
    """The key a bucket's record is stored under."""
    return json.dumps([sample, labels], sort_keys=True, separators=(",", ":"))


def file_pid(name: str) -> int | None:
    """The pid of the exemplar file *name*, ``None`` for any other file."""
    match = _NAME.match(name)
    return int(match["pid"]) if match is not None else None


class ExemplarFile:
    """The exemplar file of this process in *directory*, created empty (a file a process
    of the same pid left behind is overwritten)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, f"{EXEMPLARS_PREFIX}{os.getpid()}")
        self._lock = threading.Lock()
        self._offsets: dict[str, int] = {}
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, _INITIAL_BYTES)
            self._map = mmap.mmap(fd, _INITIAL_BYTES)
        finally:
            os.close(fd)
        self._used = HEADER_BYTES
        _INT.pack_into(self._map, 0, self._used)

    def write(self, key: str, trace_id: str, value: float, timestamp: float) -> None:
        """Make (*trace_id*, *value*, *timestamp*) the exemplar of the bucket *key*."""
        payload = _PAYLOAD.pack(bytes.fromhex(trace_id), value, timestamp)
        record = payload + _CRC.pack(zlib.crc32(payload))
        with self._lock:
            offset = self._offsets.get(key)
            if offset is not None:
                self._map[offset : offset + _RECORD.size] = record
                return
            offset = self._append(key)
            self._map[offset : offset + _RECORD.size] = record
            self._offsets[key] = offset
            # Counted only once whole: a reader never meets a record being created.
            self._used = offset + _RECORD.size
            _INT.pack_into(self._map, 0, self._used)

    def _append(self, key: str) -> int:
        """Write *key*'s header at the end; the offset of its payload."""
        encoded = key.encode("utf-8")
        padded = len(encoded) + (8 - (len(encoded) + 4) % 8)
        needed = self._used + 4 + padded + _RECORD.size
        if needed > len(self._map):
            size = len(self._map)
            while size < needed:
                size *= 2
            with open(self.path, "r+b") as f:
                os.ftruncate(f.fileno(), size)
                self._map.close()
                self._map = mmap.mmap(f.fileno(), size)
        start = self._used
        _INT.pack_into(self._map, start, len(encoded))
        self._map[start + 4 : start + 4 + len(encoded)] = encoded
        return start + 4 + padded

    def close(self) -> None:
        with self._lock:
            self._map.close()


_file: ExemplarFile | None = None
_file_lock = threading.Lock()


def _forget_after_fork() -> None:
    global _file, _file_lock  # noqa: PLW0603 - the child starts a file of its own
    _file = None
    _file_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def process_file() -> ExemplarFile | None:
    """This process's exemplar file, created on first use; ``None`` without a multiprocess
    directory."""
    global _file  # noqa: PLW0603 - one file per process
    current = _file
    if current is not None:
        return current
    directory = os.environ.get(_DIRECTORY_VARIABLE)
    if not directory:
        return None
    with _file_lock:
        if _file is None:
            _file = ExemplarFile(directory)
        return _file


def _records(data: bytes) -> Iterator[tuple[str, Stored]]:
    used = min(_INT.unpack_from(data, 0)[0], len(data)) if len(data) >= HEADER_BYTES else 0
    pos = HEADER_BYTES
    while pos + 4 <= used:
        length = _INT.unpack_from(data, pos)[0]
        padded = length + (8 - (length + 4) % 8)
        start = pos + 4 + padded
        if length < 0 or start + _RECORD.size > used:
            return  # not a record: the rest of the file is not trusted
        key = data[pos + 4 : pos + 4 + length]
        trace, value, timestamp, crc = _RECORD.unpack_from(data, start)
        pos = start + _RECORD.size
        if zlib.crc32(data[start : start + _PAYLOAD.size]) != crc:
            continue  # being rewritten as we read
        try:
            yield key.decode("utf-8"), (trace.hex(), value, timestamp)
        except UnicodeDecodeError:
            return


def _parse(key: str) -> BucketKey | None:
    try:
        sample, labels = json.loads(key)
        return sample, tuple(sorted(labels.items()))
    except (ValueError, TypeError, AttributeError):
        return None


def read_exemplars(directory: str) -> dict[BucketKey, Stored]:
    """The latest exemplar of each bucket among every process's file in *directory*.

    Deletes the files of processes that have exited and whose metric files are gone
    (folded into the archive), so the directory holds one file per live process.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    owners: dict[int, str] = {}
    writing: set[int] = set()
    for name in names:
        pid = file_pid(name)
        if pid is not None:
            owners[pid] = name
            continue
        metric_file = parse_name(name)
        if metric_file is not None:
            writing.add(metric_file.pid)
    latest: dict[BucketKey, Stored] = {}
    for pid, name in owners.items():
        path = os.path.join(directory, name)
        if pid not in writing and pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                os.remove(path)
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for key, stored in _records(data):
            parsed = _parse(key)
            if parsed is None:
                continue
            current = latest.get(parsed)
            if current is None or stored[2] > current[2]:
                latest[parsed] = stored
    return latest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's
    return True
