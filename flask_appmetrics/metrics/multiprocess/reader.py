"""Reading the multiprocess directory at scrape time: the archive plus the files.

Aggregates exactly as :class:`prometheus_client.multiprocess.MultiProcessCollector` does
(counters, summaries and histograms summed, gauges by their mode), with three differences:

* the archive of exited processes (:mod:`flask_appmetrics.metrics.multiprocess.archive`) is read
  too, and
  files it already holds are skipped;
* only the names prometheus_client writes are read, so a foreign ``*.db`` cannot break
  the page, and a file still empty (a worker starting) is skipped;
* parsed keys are cached across scrapes, since the same few hundred keys come back in
  every file of every scrape.

A fold that happens while a scrape reads would make it count a file twice or not at all;
the archive's inode changes with every fold, so the scrape compares it before and after
and reads again, and under the fold lock if folds keep coming.
"""

from __future__ import annotations

import json
import logging
import os

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from .archive import Archive, ArchiveError, archive_path, fold_lock
from .files import CorruptFileError, digest, entries, parse_name, read_bytes

logger = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
#: metric name, sample name, sorted labels, help, le of a bucket (or None), labels without le
_Key = tuple[str, str, Labels, str, "float | None", Labels]

_KEYS: dict[str, _Key] = {}
_KEYS_LIMIT = 100_000
_ATTEMPTS = 3
_LOCKED_READ_WAIT_SECONDS = 5.0

#: The last archive read: its bytes and decoded form (it changes only when a process exits).
_archive_cache: tuple[bytes, Archive] | None = None
_logged: set[str] = set()


def _parse_key(key: str) -> _Key:
    parsed = _KEYS.get(key)
    if parsed is None:
        metric_name, name, labels, help_text = json.loads(key)
        labels_key: Labels = tuple(sorted(labels.items()))
        le = _bucket_bound(labels.get("le"))
        if le is not None:
            without = tuple(item for item in labels_key if item[0] != "le")
            parsed = (metric_name, name, labels_key, help_text, le, without)
        else:
            parsed = (metric_name, name, labels_key, help_text, None, labels_key)
        if len(_KEYS) >= _KEYS_LIMIT:
            _KEYS.clear()
        _KEYS[key] = parsed
    return parsed


def _bucket_bound(le: str | None) -> float | None:
    if le is None:
        return None
    try:
        return float(le)
    except ValueError:
        return None  # a label named "le" on something other than a histogram


class _Family:
    __slots__ = ("buckets", "help", "samples", "timestamps", "typ")

    def __init__(self, typ: str, help_text: str) -> None:
        self.typ = typ
        self.help = help_text
        self.samples: dict[tuple[str, Labels], float] = {}
        self.timestamps: dict[tuple[str, Labels], float] = {}
        self.buckets: dict[Labels, dict[float, float]] = {}


class _Aggregate:
    """The sum of what every file and the archive hold, by family."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def add(  # noqa: PLR0917 - called once per entry of every file: positional is cheaper
        self, typ: str, mode: str, pid: str, key: str, value: float, ts: float
    ) -> None:
        metric_name, name, labels, help_text, le, without_le = _parse_key(key)
        family = self.families.get(metric_name)
        if family is None:
            family = self.families[metric_name] = _Family(typ, help_text)
        samples = family.samples
        if typ == "gauge":
            if mode in ("all", "liveall"):
                slot = (name, (*labels, ("pid", pid)))
                samples[slot] = value
                return
            slot = (name, labels)
            current = samples.get(slot)
            if mode in ("sum", "livesum"):
                samples[slot] = value if current is None else current + value
            elif mode in ("max", "livemax"):
                if current is None or value > current:
                    samples[slot] = value
            elif mode in ("min", "livemin"):
                if current is None or value < current:
                    samples[slot] = value
            elif ts > family.timestamps.get(slot, 0.0):  # mostrecent, livemostrecent
                samples[slot] = value
                family.timestamps[slot] = ts
        elif le is not None and typ == "histogram":
            buckets = family.buckets.setdefault(without_le, {})
            buckets[le] = buckets.get(le, 0.0) + value
        else:
            slot = (name, labels)
            samples[slot] = samples.get(slot, 0.0) + value

    def metrics(self) -> list[Metric]:
        out = []
        for metric_name, family in self.families.items():
            metric = Metric(metric_name, family.help, family.typ)
            for labels, buckets in family.buckets.items():
                acc = 0.0
                for le in sorted(buckets):
                    acc += buckets[le]
                    metric.add_sample(
                        metric_name + "_bucket",
                        {**dict(labels), "le": floatToGoString(le)},  # type: ignore[no-untyped-call]
                        acc,
                    )
                # Each series' samples together, as OpenMetrics requires.
                family.samples.pop((metric_name + "_count", labels), None)
                metric.add_sample(metric_name + "_count", dict(labels), acc)
                total = family.samples.pop((metric_name + "_sum", labels), None)
                if total is not None:
                    metric.add_sample(metric_name + "_sum", dict(labels), total)
            for (name, labels), value in family.samples.items():
                metric.add_sample(name, dict(labels), value)
            out.append(metric)
        return out


def _archive(data: bytes) -> Archive:
    global _archive_cache  # noqa: PLW0603 - one decoded archive per process, reused
    cached = _archive_cache
    if cached is not None and cached[0] == data:
        return cached[1]
    archive = Archive.decode(data)
    _archive_cache = (data, archive)
    return archive


def _log_once(what: str, message: str, *args: object) -> None:
    if what not in _logged:
        _logged.add(what)
        logger.error(message, *args)


def _add_files(path: str, sources: dict[str, tuple[int, str]], aggregate: _Aggregate) -> None:
    """Add every metric file of *path* but those the archive already holds."""
    add = aggregate.add
    for name in os.listdir(path):
        file = parse_name(name)
        if file is None:
            continue
        try:
            data, file_ino = read_bytes(os.path.join(path, name))
        except FileNotFoundError:
            continue  # live gauges of a dead process, or a folded file
        if not data:
            continue  # a starting process's file, no value yet
        ident = sources.get(name)
        if ident is not None and ident == (file_ino, digest(data)):
            continue  # folded by a fold that has not deleted it yet
        try:
            # Decoded whole before any entry counts: a corrupt file adds nothing.
            rows = list(entries(data))
        except (CorruptFileError, UnicodeDecodeError) as exc:
            _log_once(name, "flask-appmetrics: skipping corrupt metric file %s: %s", name, exc)
            continue
        pid = str(file.pid)
        typ, mode = file.typ, file.mode
        for key, value, ts in rows:
            add(typ, mode, pid, key, value, ts)


def _read_once(path: str, *, check: bool = True) -> list[Metric] | None:
    """One consistent read, or ``None`` when a fold replaced the archive meanwhile (and
    *check*)."""
    aggregate = _Aggregate()
    add = aggregate.add
    apath = archive_path(path)
    try:
        fd: int | None = os.open(apath, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    try:
        archive = Archive()
        ino = None
        if fd is not None:
            ino = os.fstat(fd).st_ino
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
            try:
                archive = _archive(data)
            except ArchiveError as exc:
                # The counts of exited workers are missing from the page until it is fixed.
                _log_once("archive", "flask-appmetrics: ignoring %s: %s", apath, exc)
            for prefix, values in archive.values.items():
                typ, _, mode = prefix.partition("_")
                for (key, pid), (value, ts) in values.items():
                    add(typ, mode, pid, key, value, ts)
        _add_files(path, archive.sources, aggregate)
        try:
            now = os.stat(apath).st_ino
        except FileNotFoundError:
            now = None
        if check and now != ino:
            return None
        return aggregate.metrics()
    finally:
        if fd is not None:
            os.close(fd)


def read_directory(path: str) -> list[Metric]:
    """The aggregated families of every process, exited ones included."""
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
