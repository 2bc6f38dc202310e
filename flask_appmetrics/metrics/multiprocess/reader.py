"""Reading the multiprocess directory at scrape time: the archive plus the files.

Aggregates exactly as :class:`prometheus_client.multiprocess.MultiProcessCollector` does
(:mod:`flask_appmetrics.metrics.multiprocess.series`), with three differences:

* the archive of exited processes (:mod:`flask_appmetrics.metrics.multiprocess.archive`) is
  read too, and files it already holds are skipped;
* only the names prometheus_client writes are read, so a foreign ``*.db`` cannot break
  the page, and a file still empty (a worker starting) is skipped;
* what does not change between scrapes is not parsed again.

prometheus_client spends most of its read parsing keys. A file only ever grows: an entry,
once written, keeps its key and its place, and only its value and timestamp change. So
each file's *layout* (the place of every entry and the series it holds) is kept from one
scrape to the next, with a :class:`struct.Struct` that reads all its entries at once; a
scrape reads the file, checks that every key is still where the layout says (a file
deleted and created again under the same name and inode number is caught here), reads the
values in one call and parses only entries added since. The archive, which changes only
when a process exits, is decoded and added up once per change.

A fold that happens while a scrape reads would make it count a file twice or not at all;
the archive's inode changes with every fold, so the scrape compares it before and after
and reads again, and under the fold lock if folds keep coming.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable
from itertools import pairwise, repeat
from operator import add, itemgetter

from prometheus_client.metrics_core import Metric

from .archive import Archive, ArchiveError, archive_path, fold_lock
from .files import HEADER_BYTES, CorruptFileError, MetricFile, digest, parse_name, read_bytes
from .series import ALL, LIMIT, MAX, MOSTRECENT, SUM, Aggregate, SeriesTable, operation

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
_LOCKED_READ_WAIT_SECONDS = 5.0
_INT = struct.Struct("i")
#: struct format of an entry, by key length
_PARTS: dict[int, str] = {}
_logged: set[str] = set()


class _Layout:
    """Where the entries of one file are, and the series they hold."""

    __slots__ = (
        "families", "file", "format", "ino", "keys", "op", "reader", "runs", "slots", "used"
    )  # fmt: skip

    def __init__(self, file: MetricFile, ino: int) -> None:
        self.file = file
        self.op = operation(file.typ, file.mode)
        self.ino = ino
        self.used = HEADER_BYTES
        #: per entry: its length and key, as bytes
        self.keys: tuple[bytes, ...] = ()
        self.slots: tuple[int, ...] = ()
        self.families: frozenset[str] = frozenset()
        #: struct format of every entry: length and key, padding, value, timestamp
        self.format: list[str] = []
        self.reader = struct.Struct("=")
        #: runs of consecutive slots: (first, end, values of the run from a row), or
        #: ``None`` when there are too many runs for them to be worth it
        self.runs: list[tuple[int, int, Callable[[tuple[object, ...]], tuple[float, ...]]]] | None
        self.runs = []

    def extend(self, table: SeriesTable, data: bytes) -> None:
        """Add the entries written after :attr:`used`.

        :raises CorruptFileError: an entry runs past the used size.
        :raises ValueError: a key prometheus_client would not write (not JSON, not UTF-8).
        """
        used = len(data)
        pos = self.used
        unpack_int = _INT.unpack_from
        keys: list[bytes] = []
        parts: list[str] = []
        slots: list[int] = []
        file = self.file
        typ = file.typ
        pid = file.pid_label if self.op == ALL else ""
        known = table.known
        try:
            while pos < used:
                if pos + 4 > used:
                    raise CorruptFileError(f"entry at byte {pos} runs past the used size {used}")
                length = unpack_int(data, pos)[0]
                pad = 8 - (length + 4) % 8
                end = pos + 4 + length + pad + 16
                if length < 0 or end > used:
                    raise CorruptFileError(f"entry at byte {pos} runs past the used size {used}")
                raw = data[pos : pos + 4 + length]
                key = raw[4:]
                slot = known.get((key, pid))
                if slot is None:
                    slot = table.slot(key, typ, pid)
                keys.append(raw)
                part = _PARTS.get(length)
                if part is None:
                    part = _PARTS[length] = f"{4 + length}s{pad}xdd"
                parts.append(part)
                slots.append(slot)
                pos = end
        finally:
            table.settle()  # also for the keys read before a corrupt entry
        family_of = table.family_of
        families = {family_of[slot].name for slot in set(slots)}
        self.keys += tuple(keys)
        self.slots += tuple(slots)
        self.families = self.families.union(families)
        self.format += parts
        self.reader = struct.Struct("=" + "".join(self.format))
        self.used = used
        self.runs = _runs(self.slots)

    def values(self, data: bytes) -> tuple[object, ...] | None:
        """``(key, value, timestamp)`` of every known entry, flat; ``None`` when the keys
        are not where they were (not the file the layout was made from)."""
        if len(data) < self.used:
            return None
        row = self.reader.unpack_from(data, HEADER_BYTES)
        if row[0::3] != self.keys:
            return None
        return row


def _runs(
    slots: tuple[int, ...],
) -> list[tuple[int, int, Callable[[tuple[object, ...]], tuple[float, ...]]]] | None:
    """Slots in runs of consecutive numbers, each with what picks its values from a row
    (slot order, entries of one slot in file order: the order prometheus_client adds them).

    Files of workers of one app hold mostly the same series: the first file read numbered
    them, so a file is usually a few runs, and a run is added with one slice operation
    instead of one Python step per entry.
    """
    count = len(slots)
    if not count:
        return []
    first = slots[0]
    if slots == tuple(range(first, first + count)):  # the file that numbered its series
        return [(first, first + count, itemgetter(slice(1, 3 * count, 3)))]
    order = sorted(range(count), key=slots.__getitem__)  # stable: file order within a slot
    ordered = [slots[k] for k in order]
    positions = [3 * k + 1 for k in order]  # a value is the second of three items per entry
    breaks = [k + 1 for k, (a, b) in enumerate(pairwise(ordered)) if b != a + 1]
    if len(breaks) >= _MAX_RUNS and (len(breaks) + 1) * _RUN_SIZE > count:
        return None
    runs: list[tuple[int, int, Callable[[tuple[object, ...]], tuple[float, ...]]]] = []
    for i, j in pairwise([0, *breaks, count]):
        run = positions[i:j]
        start = run[0]
        pick: Callable[[tuple[object, ...]], tuple[float, ...]]
        if run == list(range(start, start + 3 * len(run), 3)):  # a slice of the row
            pick = itemgetter(slice(start, run[-1] + 1, 3))
        else:
            pick = itemgetter(*run)
        runs.append((ordered[i], ordered[j - 1] + 1, pick))
    return runs


#: Below this many entries per run, one Python step per entry is as fast.
_RUN_SIZE = 8
_MAX_RUNS = 16


class _Archived:
    """The archive, decoded and added up (it only changes when a process exits)."""

    __slots__ = ("archive", "data", "families", "present", "stamps", "values")

    def __init__(self, data: bytes, archive: Archive, table: SeriesTable) -> None:
        self.data = data
        self.archive = archive
        self.values: list[float] = []
        self.present: set[int] = set()
        self.stamps: dict[int, float] = {}
        self.families: set[str] = set()
        slots: list[tuple[int, int, float, float]] = []
        try:
            for prefix, rows in archive.values.items():
                typ, _, mode = prefix.partition("_")
                op = operation(typ, mode)
                for (key, pid), (value, ts) in rows.items():
                    slot = table.slot(key.encode(), typ, pid if op == ALL else "")
                    slots.append((op, slot, value, ts))
        finally:
            table.settle()
        self.values = [0.0] * len(table)
        for op, slot, value, ts in slots:
            _combine(self, op, slot, value, ts)
            self.families.add(table.family_of[slot].name)


def _combine(into: _Archived | Aggregate, op: int, slot: int, value: float, ts: float) -> None:
    """One value into a slot, as prometheus_client combines the values of two files."""
    values, present = into.values, into.present
    if op == SUM:
        values[slot] += value
        present.add(slot)
    elif op == ALL:
        values[slot] = value
        present.add(slot)
    elif op == MOSTRECENT:
        if ts > into.stamps.get(slot, 0.0):
            values[slot] = value
            into.stamps[slot] = ts
            present.add(slot)
    elif slot not in present:
        values[slot] = value
        present.add(slot)
    elif (value > values[slot]) if op == MAX else (value < values[slot]):
        values[slot] = value


class _Directory:
    """What this process keeps of one directory between scrapes."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.table = SeriesTable(self.lock)
        self.layouts: dict[str, _Layout] = {}
        self.archived: _Archived | None = None

    def reset_if_full(self) -> None:
        if len(self.table) > LIMIT:
            self.table = SeriesTable(self.lock)
            self.layouts.clear()
            self.archived = None


_DIRECTORIES: dict[str, _Directory] = {}
_DIRECTORIES_LIMIT = 16
_DIRECTORIES_LOCK = threading.Lock()
_FILES: dict[str, MetricFile | None] = {}
_FILES_LIMIT = 65_536


def _directory(path: str) -> _Directory:
    with _DIRECTORIES_LOCK:
        found = _DIRECTORIES.get(path)
        if found is None:
            if len(_DIRECTORIES) >= _DIRECTORIES_LIMIT:
                _DIRECTORIES.clear()
            found = _DIRECTORIES[path] = _Directory()
        return found


def _file(name: str) -> MetricFile | None:
    found = _FILES.get(name, False)
    if found is False:
        if len(_FILES) >= _FILES_LIMIT:
            _FILES.clear()
        found = _FILES[name] = parse_name(name)
    return found  # type: ignore[return-value]


def _log_once(what: str, message: str, *args: object) -> None:
    if what not in _logged:
        _logged.add(what)
        logger.error(message, *args)


def _archived(directory: _Directory, data: bytes, apath: str) -> _Archived | None:
    cached = directory.archived
    if cached is not None and cached.data == data:
        return cached
    try:
        archived = _Archived(data, Archive.decode(data), directory.table)
    except (ArchiveError, ValueError) as exc:
        # The counts of exited workers are missing from the page until it is fixed.
        _log_once("archive", "flask-appmetrics: ignoring %s: %s", apath, exc)
        return None
    directory.archived = archived
    return archived


def _file_values(
    directory: _Directory, name: str, file: MetricFile, data: bytes, ino: int
) -> tuple[_Layout, tuple[object, ...]] | None:
    """The layout of a file and its entries, or ``None`` (logged) when it is corrupt."""
    layout = directory.layouts.get(name)
    if layout is not None and layout.ino == ino:
        row = layout.values(data)
        if row is not None:
            if len(data) == layout.used:
                return layout, row
        else:
            layout = None
    else:
        layout = None
    try:
        if layout is None:
            layout = _Layout(file, ino)
        layout.extend(directory.table, data)
        row = layout.reader.unpack_from(data, HEADER_BYTES)
    except (CorruptFileError, ValueError) as exc:
        # Decoded whole before any entry counts: a corrupt file adds nothing.
        directory.layouts.pop(name, None)
        _log_once(name, "flask-appmetrics: skipping corrupt metric file %s: %s", name, exc)
        return None
    directory.layouts[name] = layout
    return layout, row


def _add(aggregate: Aggregate, layout: _Layout, row: tuple[object, ...]) -> None:
    op = layout.op
    slots = layout.slots
    values = aggregate.values
    runs = layout.runs
    if op == SUM and runs is not None:
        for first, end, pick in runs:
            values[first:end] = map(add, values[first:end], pick(row))
        aggregate.present.update(slots)
    elif op == SUM:
        for slot, value in zip(slots, row[1::3], strict=True):
            values[slot] += value  # type: ignore[operator]
        aggregate.present.update(slots)
    elif op == ALL:
        for slot, value in zip(slots, row[1::3], strict=True):
            values[slot] = value  # type: ignore[call-overload]
        aggregate.present.update(slots)
    else:
        for slot, value, ts in zip(slots, row[1::3], row[2::3], strict=True):
            _combine(aggregate, op, slot, value, ts)  # type: ignore[arg-type]
    aggregate.families.update(layout.families)


def _read_files(
    directory: _Directory, path: str, sources: dict[str, tuple[int, str]]
) -> list[tuple[_Layout, tuple[object, ...]]]:
    """Every metric file of *path* but those the archive already holds, with its entries."""
    out = []
    names = os.listdir(path)
    for name in names:
        file = _file(name)
        if file is None:
            continue
        try:
            data, ino = read_bytes(os.path.join(path, name))
        except FileNotFoundError:
            continue  # live gauges of a dead process, or a folded file
        if not data:
            continue  # a starting process's file, no value yet
        ident = sources.get(name)
        if ident is not None and ident == (ino, digest(data)):
            continue  # folded by a fold that has not deleted it yet
        found = _file_values(directory, name, file, data, ino)
        if found is not None:
            out.append(found)
    if len(directory.layouts) > len(out):
        # Files gone since the last scrape (folded, or a worker's live gauges).
        kept = set(names)
        for name in [n for n in directory.layouts if n not in kept]:
            del directory.layouts[name]
    return out


def _read_once(path: str, *, check: bool = True) -> Aggregate | None:
    """One consistent read, or ``None`` when a fold replaced the archive meanwhile (and
    *check*)."""
    directory = _directory(path)
    with directory.lock:
        directory.reset_if_full()
        apath = archive_path(path)
        try:
            fd: int | None = os.open(apath, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        try:
            archived = None
            ino = None
            if fd is not None:
                ino = os.fstat(fd).st_ino
                with open(fd, "rb", closefd=False) as f:
                    archived = _archived(directory, f.read(), apath)
            rows = _read_files(directory, path, archived.archive.sources if archived else {})
            try:
                now = os.stat(apath).st_ino
            except FileNotFoundError:
                now = None
            if check and now != ino:
                return None
        finally:
            if fd is not None:
                os.close(fd)
        aggregate = Aggregate(directory.table)
        if archived is not None:
            aggregate.values = archived.values.copy()
            aggregate.present = archived.present.copy()
            aggregate.families = archived.families.copy()
            if archived.stamps:
                aggregate.stamps = archived.stamps.copy()
        values = aggregate.values
        values.extend(repeat(0.0, len(directory.table) - len(values)))
        for layout, row in rows:
            _add(aggregate, layout, row)
        return aggregate


def scrape_directory(path: str) -> Aggregate:
    """Every process's values, exited ones included."""
    for _ in range(_ATTEMPTS):
        result = _read_once(path)
        if result is not None:
            return result
    # Folds kept coming (many workers exiting at once): read while none can happen.
    with fold_lock(path, _LOCKED_READ_WAIT_SECONDS) as locked:
        # Without the lock in time, this read may count one fold's files twice or not at
        # all: better than no page.
        result = _read_once(path, check=locked)
    assert result is not None
    return result


def read_directory(path: str) -> list[Metric]:
    """The aggregated families of every process, exited ones included."""
    return scrape_directory(path).metrics()
