"""The files of prometheus_client's multiprocess directory: names, contents, owners.

prometheus_client writes, per process, ``counter_<pid>.db``, ``histogram_<pid>.db``,
``summary_<pid>.db`` and ``gauge_<mode>_<pid>.db`` (``prometheus_client/values.py``); our
own files are the archive of dead processes, its temporary file while it is rewritten, a
lock file and each process's latest exemplars. Nothing else in the directory is ever read,
folded or deleted: an application's ``app.db`` that happens to live there is someone
else's.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

#: Gauge aggregation modes of prometheus_client (``Gauge._MULTIPROC_MODES``).
GAUGE_MODES = (
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
)

#: Folded values of processes that have exited.
ARCHIVE_NAME = "flask_appmetrics.archive"
#: Taken (``flock``) by whoever folds, so that two processes never fold the same file.
LOCK_NAME = "flask_appmetrics.lock"
#: The archive being written, renamed over :data:`ARCHIVE_NAME` once complete.
TMP_PREFIX = "flask_appmetrics.archive."
TMP_SUFFIX = ".tmp"
#: A process's latest exemplars (:mod:`.exemplar_file`): this prefix and its pid.
EXEMPLARS_PREFIX = "flask_appmetrics.exemplars."

_METRIC_FILE = re.compile(
    r"(?P<prefix>counter|histogram|summary|gauge_(?P<mode>"
    + "|".join(GAUGE_MODES)
    + r"))_(?P<pid>[0-9]{1,10})\.db\Z"
)

_INT = struct.Struct("i")
_TWO_DOUBLES = struct.Struct("dd")
#: The used-bytes integer and padding at the start of every file.
HEADER_BYTES = 8


class CorruptFileError(ValueError):
    """A metric file whose entries run past its used size."""


@dataclass(frozen=True)
class MetricFile:
    """A file prometheus_client writes for one process.

    :param name: the file name.
    :param prefix: ``counter``, ``histogram``, ``summary`` or ``gauge_<mode>``.
    :param typ: the metric type.
    :param mode: the gauge mode, ``""`` for the other types.
    :param pid: the process that writes it.
    """

    name: str
    prefix: str
    typ: str
    mode: str
    pid: int

    @property
    def dies_with_process(self) -> bool:
        """Whether the values leave the page when the process exits (``live*`` gauges)."""
        return self.mode.startswith("live")

    @property
    def pid_label(self) -> str:
        """The pid as the name spells it: the ``pid`` label of ``all`` gauges."""
        return self.name[self.name.rindex("_") + 1 : -3]


def parse_name(name: str) -> MetricFile | None:
    """The metric file *name* describes, or ``None`` for any other file."""
    match = _METRIC_FILE.match(name)
    if match is None:
        return None
    mode = match["mode"] or ""
    return MetricFile(
        name, match["prefix"], "gauge" if mode else match["prefix"], mode, int(match["pid"])
    )


def is_own_file(name: str) -> bool:
    """Whether *name* is one of flask-appmetrics' own files in the directory."""
    return (
        name in (ARCHIVE_NAME, LOCK_NAME)
        or (name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX))
        or name.startswith(EXEMPLARS_PREFIX)
    )


def foreign_files(names: list[str]) -> list[str]:
    """The names that neither prometheus_client nor flask-appmetrics writes."""
    return sorted(n for n in names if parse_name(n) is None and not is_own_file(n))


def read_bytes(path: str) -> tuple[bytes, int]:
    """The used part of a metric file and its inode number.

    An empty result (``b""``) is a file a starting process has created but not sized yet.

    :raises FileNotFoundError: the file is gone.
    """
    with open(path, "rb") as f:
        ino = os.fstat(f.fileno()).st_ino
        # Read like prometheus_client does: the first page says how much is used.
        data = f.read(mmap.PAGESIZE)
        if len(data) < HEADER_BYTES:
            return b"", ino
        used = _INT.unpack_from(data, 0)[0]
        if used < HEADER_BYTES:
            return b"", ino
        if used > len(data):
            data += f.read(used - len(data))
    return data[:used], ino


def entries(data: bytes) -> Iterator[tuple[str, float, float]]:
    """``(key, value, timestamp)`` of each entry of a file's used bytes.

    :raises CorruptFileError: an entry runs past the used size.
    """
    used = len(data)
    pos = HEADER_BYTES
    unpack_int = _INT.unpack_from
    unpack_doubles = _TWO_DOUBLES.unpack_from
    while pos < used:
        length = unpack_int(data, pos)[0]
        if length < 0 or pos + 4 + length + 16 > used:
            raise CorruptFileError(f"entry at byte {pos} runs past the used size {used}")
        pos += 4
        key = data[pos : pos + length].decode("utf-8")
        pos += length + (8 - (length + 4) % 8)
        value, timestamp = unpack_doubles(data, pos)
        pos += 16
        yield key, value, timestamp


def digest(data: bytes) -> str:
    """A digest of a file's contents: the archive skips a folded file only while it holds
    exactly what was folded."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# -- who is alive --------------------------------------------------------------------------

#: pid -> kernel start time of a process seen mapping its metric files.
_OWNERS: dict[int, int] = {}
_OWNERS_LIMIT = 4096


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) of *pid*, ``None`` without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return ("X", 0)  # gone between kill() and here
        return None
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    fields = text[text.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def _maps_any(pid: int, inodes: set[int]) -> bool | None:
    """Whether *pid* has one of *inodes* mapped; ``None`` when its maps cannot be read."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            maps = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    wanted = {str(i).encode() for i in inodes}
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[4] in wanted:
            return True
    return False


def _fds_any(pid: int, inodes: set[int]) -> bool | None:
    """Whether *pid* has one of *inodes* open; ``None`` when its descriptors cannot be read.

    prometheus_client creates a file with ``open()``, sizes it, and only then maps it: in
    between, the file is open but not yet in ``/proc/<pid>/maps``.
    """
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    for fd in fds:
        try:
            if os.stat(os.path.join(fd_dir, fd)).st_ino in inodes:
                return True
        except OSError:
            continue  # closed meanwhile, or not a file (sockets, pipes of other mounts)
    return False


def process_alive(pid: int, inodes: set[int]) -> bool:
    """Whether *pid* is a live process writing the metric files with these inode numbers.

    A pid that exists may belong to another process since the worker died (pids are
    reused; here ``kernel.pid_max`` may be 32768). prometheus_client keeps each of its
    files open and mapped for the life of the process, so a live owner is one whose
    ``/proc/<pid>/maps`` or ``/proc/<pid>/fd`` holds one of the files: the descriptors
    cover the moment between the file's creation and its mapping, when a scrape must not
    take a starting worker's new file for a dead one's. A zombie (exited, not yet reaped) writes
    nothing more and counts as dead. Where /proc cannot tell, existence decides: keeping a
    dead process's files costs a scrape some time, folding a live one's would lose counts.
    """
    if pid == os.getpid():
        return True
    if pid <= 0:
        return True  # never a name prometheus_client writes; kill(0) would mean our group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    except OverflowError:
        return False  # above any pid the kernel hands out
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X", "x"):
        return False
    if _OWNERS.get(pid) == started:
        return True
    mapped = _maps_any(pid, inodes)
    if mapped is None:
        return True
    if not mapped:
        opened = _fds_any(pid, inodes)
        if opened is None or opened:
            return True  # being set up: mapped next, cached as owner once it is
    if mapped:
        if len(_OWNERS) >= _OWNERS_LIMIT:
            _OWNERS.clear()
        _OWNERS[pid] = started
    return mapped
