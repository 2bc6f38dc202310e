"""Folding the metric files of exited processes into one archive file.

Every process of a pre-fork server leaves its files in ``PROMETHEUS_MULTIPROC_DIR`` when
it exits; with workers recycled (gunicorn ``--max-requests``, uWSGI ``--max-requests``,
crashes) the directory and the scrape grow without bound. A fold moves a dead process's
counters, histograms, summaries and non-``live`` gauges into ``flask_appmetrics.archive``
and deletes its files; its ``live*`` gauges are deleted, as
:func:`prometheus_client.multiprocess.mark_process_dead` does.

A fold, under an exclusive ``flock`` so that two processes never fold the same file:

1. reads the dead process's files and merges them into the archive's values;
2. writes the new archive, listing each folded file with its inode and a digest of the
   bytes folded, to a temporary file; ``fsync``; ``os.replace`` over the archive;
   ``fsync`` of the directory;
3. deletes the folded files;
4. rewrites the archive without that list.

A crash before 3 leaves the old archive and every file (the temporary file is removed by
the next fold); a crash between 2 and 4 leaves files the archive lists, which a scrape
skips while they hold exactly the folded bytes and the next fold deletes. No count is ever
lost or counted twice. The reader's side (:mod:`flask_appmetrics.metrics.multiprocess.reader`)
detects a fold
that happened while it read by the archive's inode, and reads again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .files import (
    ARCHIVE_NAME,
    LOCK_NAME,
    TMP_PREFIX,
    TMP_SUFFIX,
    CorruptFileError,
    MetricFile,
    digest,
    entries,
    parse_name,
    process_alive,
    read_bytes,
)

logger = logging.getLogger(__name__)

_FORMAT = 1

#: (key, pid label) -> [value, timestamp]; the pid label only for ``all`` gauges.
Values = dict[tuple[str, str], list[float]]


class ArchiveError(RuntimeError):
    """The archive file cannot be read: nothing is folded until it is repaired."""


@dataclass
class Archive:
    """The folded values of exited processes.

    :param values: per file prefix (``counter``, ``gauge_max``...), the merged values.
    :param sources: folded files that may still exist: name -> (inode, digest of bytes).
    """

    values: dict[str, Values] = field(default_factory=dict)
    sources: dict[str, tuple[int, str]] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = {
            "format": _FORMAT,
            "sources": {name: list(ident) for name, ident in self.sources.items()},
            "values": {
                prefix: [[key, pid, v[0], v[1]] for (key, pid), v in vals.items()]
                for prefix, vals in self.values.items()
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Archive:
        try:
            doc = json.loads(data)
            if doc["format"] != _FORMAT:
                raise ArchiveError(f"unknown archive format {doc['format']!r}")
            sources = {str(n): (int(i[0]), str(i[1])) for n, i in doc["sources"].items()}
            values: dict[str, Values] = {}
            for prefix, rows in doc["values"].items():
                values[str(prefix)] = {
                    (str(key), str(pid)): [float(v), float(ts)] for key, pid, v, ts in rows
                }
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ArchiveError(f"unreadable archive: {exc}") from exc
        return cls(values, sources)

    def forget(self, drop: frozenset[str]) -> None:
        """Remove the gauge values of the families *drop* (kept by an earlier version)."""
        if not drop:
            return
        for prefix, vals in self.values.items():
            if prefix.startswith("gauge_"):
                for slot in [s for s in vals if json.loads(s[0])[0] in drop]:
                    del vals[slot]

    def merge(self, file: MetricFile, data: bytes, drop: frozenset[str] = frozenset()) -> None:
        """Add the entries of one dead process's file, the way the scrape would combine them.

        :param drop: gauge families whose file values the scrape never shows (computed
            when the page is served): not kept, or ``all`` gauges would grow the archive
            by one series per exited process.
        """
        # Every entry is decoded before any is merged: a corrupt file changes nothing.
        rows = list(entries(data))
        if drop and file.typ == "gauge":
            rows = [row for row in rows if json.loads(row[0])[0] not in drop]
        vals = self.values.setdefault(file.prefix, {})
        mode = file.mode
        pid = str(file.pid) if mode == "all" else ""
        for key, value, timestamp in rows:
            slot = (key, pid)
            current = vals.get(slot)
            if current is None:
                vals[slot] = [value, timestamp]
            elif mode in ("", "sum"):
                current[0] += value
            elif mode == "max":
                current[0] = max(current[0], value)
            elif mode == "min":
                current[0] = min(current[0], value)
            elif mode == "mostrecent":
                if timestamp > current[1]:
                    current[:] = [value, timestamp]
            else:  # "all": one series per pid, the pid is in the slot
                current[:] = [value, timestamp]


def archive_path(path: str) -> str:
    return os.path.join(path, ARCHIVE_NAME)


def load_archive(path: str) -> Archive:
    """The archive of *path* (empty when there is none yet)."""
    try:
        with open(archive_path(path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return Archive()
    return Archive.decode(data)


def _write_archive(path: str, archive: Archive) -> None:
    tmp = os.path.join(path, f"{TMP_PREFIX}{os.getpid()}{TMP_SUFFIX}")
    data = archive.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, archive_path(path))
    # The rename must be on disk before the folded files are deleted.
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def fold_lock(path: str, wait_seconds: float) -> Iterator[bool]:
    """Hold the fold lock of *path*; yields ``False`` if it was not had in *wait_seconds*."""
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.005)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def metric_files(path: str) -> list[MetricFile]:
    """prometheus_client's files in *path* (nothing else)."""
    out = []
    for name in os.listdir(path):
        parsed = parse_name(name)
        if parsed is not None:
            out.append(parsed)
    return out


def dead_pids(path: str, files: Iterable[MetricFile]) -> set[int]:
    """The processes whose files are in *files* and that no longer run."""
    by_pid: dict[int, set[int]] = {}
    for f in files:
        inodes = by_pid.setdefault(f.pid, set())
        with contextlib.suppress(OSError):
            inodes.add(os.stat(os.path.join(path, f.name)).st_ino)
    return {pid for pid, inodes in by_pid.items() if not process_alive(pid, inodes)}


@dataclass(frozen=True)
class FoldReport:
    """What one fold did.

    :param pids: processes whose files were folded or removed.
    :param removed: files deleted (folded, ``live*`` gauges, leftovers of a crashed fold).
    :param locked: ``False`` when another process held the lock (it is folding: nothing
        is lost, the next fold does the rest).
    """

    pids: tuple[int, ...] = ()
    removed: int = 0
    locked: bool = True


_CORRUPT_LOGGED: set[str] = set()


def fold(
    path: str,
    dead: Iterable[int] = (),
    *,
    wait_seconds: float = 0.0,
    drop: frozenset[str] = frozenset(),
    detect: bool = True,
) -> FoldReport:
    """Fold the files of the processes *dead* and of any other process found dead.

    :param dead: pids known to have exited (gunicorn's ``child_exit``).
    :param wait_seconds: how long to wait for another process's fold to end.
    :param drop: gauge families not worth keeping (see :meth:`Archive.merge`).
    :param detect: also look for other exited processes by their pid.
    :raises ArchiveError: the archive is unreadable (nothing was changed).
    :raises OSError: the directory cannot be written (nothing was lost).
    """
    with fold_lock(path, wait_seconds) as locked:
        if not locked:
            return FoldReport(locked=False)
        return _fold_locked(path, set(dead), drop, detect)


def _leftovers(path: str, archive: Archive) -> dict[str, tuple[int, str]]:
    """Files a crashed fold merged but did not delete: still identical means still merged."""
    out = {}
    for name, ident in archive.sources.items():
        try:
            data, ino = read_bytes(os.path.join(path, name))
        except FileNotFoundError:
            continue
        if (ino, digest(data)) == ident:
            out[name] = ident
    return out


def _remove(path: str, name: str) -> bool:
    try:
        os.remove(os.path.join(path, name))
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("flask-appmetrics: cannot remove %s: %s", name, exc)
        return False
    return True


def _fold_locked(path: str, known_dead: set[int], drop: frozenset[str], detect: bool) -> FoldReport:
    for name in os.listdir(path):
        if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
            # A fold that crashed before its rename: the old archive and the files are intact.
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))
    archive = load_archive(path)
    archive.forget(drop)
    files = metric_files(path)
    dead = set(known_dead)
    if detect:
        dead |= dead_pids(path, [f for f in files if f.pid not in known_dead])
    leftovers = _leftovers(path, archive)
    doomed = list(leftovers)
    archive.sources = dict(leftovers)

    pids: set[int] = set()
    live_gauges: list[str] = []
    for f in files:
        if f.pid not in dead or f.name in leftovers:
            continue
        pids.add(f.pid)
        if f.dies_with_process:
            live_gauges.append(f.name)
            continue
        try:
            data, ino = read_bytes(os.path.join(path, f.name))
        except FileNotFoundError:
            continue
        try:
            archive.merge(f, data, drop)
        except (CorruptFileError, UnicodeDecodeError, ValueError, IndexError, TypeError) as exc:
            if f.name not in _CORRUPT_LOGGED:
                _CORRUPT_LOGGED.add(f.name)
                logger.error("flask-appmetrics: not folding %s, it is corrupt: %s", f.name, exc)
            continue
        archive.sources[f.name] = (ino, digest(data))
        doomed.append(f.name)

    # Gauges that leave with their process are not archived: gone first, whatever follows.
    removed = sum(_remove(path, name) for name in live_gauges)
    if not doomed:
        return FoldReport(tuple(sorted(pids)), removed)
    _write_archive(path, archive)
    failed: dict[str, tuple[int, str]] = {}
    for name in doomed:
        if _remove(path, name):
            removed += 1
        elif os.path.exists(os.path.join(path, name)):
            failed[name] = archive.sources[name]
    archive.sources = failed
    _write_archive(path, archive)
    return FoldReport(tuple(sorted(pids)), removed)
