"""The series of a multiprocess directory, as this process has seen them, and one scrape's
values of them.

prometheus_client's collector parses every key of every file on every scrape (JSON, the
most expensive part of its read) and builds the samples anew. The keys barely change from
one scrape to the next, so here each distinct series gets a number (a *slot*) the first
time a key names it, with its family, its labels and its place on the page; a scrape is
then an array of values indexed by slot (:class:`Aggregate`), and the page is rendered
from that array.

Aggregation is prometheus_client's (``MultiProcessCollector._accumulate_metrics``):
counters, summaries and histograms summed over every file, in the order they are read,
starting from ``0.0``; gauges by their mode (``all``: one series per process, with a
``pid`` label; ``min``, ``max``, ``sum``; ``mostrecent``: the value with the latest
timestamp, absent until one has a timestamp); histogram buckets summed per bound and
served cumulative in bound order, with ``_count`` the last cumulative sum.
"""

from __future__ import annotations

import json
import threading
from bisect import insort
from collections.abc import Iterator
from itertools import accumulate
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

Labels = tuple[tuple[str, str], ...]

#: How a slot's values from several files combine (the gauge modes, ``SUM`` for the rest).
SUM, MAX, MIN, MOSTRECENT, ALL = range(5)
_GAUGE_OPS = {
    "sum": SUM,
    "livesum": SUM,
    "max": MAX,
    "livemax": MAX,
    "min": MIN,
    "livemin": MIN,
    "mostrecent": MOSTRECENT,
    "livemostrecent": MOSTRECENT,
    "all": ALL,
    "liveall": ALL,
}


def operation(typ: str, mode: str) -> int:
    """How values of a file of *typ* (and gauge *mode*) combine with other files'."""
    return _GAUGE_OPS.get(mode, SUM) if typ == "gauge" else SUM


class ParsedKey(NamedTuple):
    """A key of a metric file, decoded."""

    family: str
    name: str
    #: sorted, as prometheus_client sorts them
    labels: Labels
    help: str
    #: the bound of a bucket (a label ``le`` that is a number), else ``None``
    le: float | None
    #: *labels* without ``le``
    without_le: Labels


_KEYS: dict[bytes, ParsedKey] = {}
_KEYS_LIMIT = 100_000


def parse_key(key: bytes) -> ParsedKey:
    """The parts of a key as prometheus_client writes it (a JSON list), cached.

    :raises ValueError: not such a key (not JSON, not UTF-8, not four parts).
    """
    parsed = _KEYS.get(key)
    if parsed is None:
        family, name, labels, help_text = json.loads(key)
        if not isinstance(labels, dict):
            raise ValueError("the labels of a key are not an object")
        items: Labels = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        le = _bucket_bound(labels.get("le"))
        without = items if le is None else tuple(item for item in items if item[0] != "le")
        parsed = ParsedKey(str(family), str(name), items, str(help_text), le, without)
        if len(_KEYS) >= _KEYS_LIMIT:
            _KEYS.clear()
        _KEYS[key] = parsed
    return parsed


def _bucket_bound(le: object) -> float | None:
    if not isinstance(le, str):
        return None
    try:
        return float(le)
    except ValueError:
        return None  # a label named "le" on something other than a bucket


class Group:
    """The series of one family that share labels (a histogram's without ``le``): they
    are served together, buckets first in bound order, then ``_count``, then the rest."""

    __slots__ = ("buckets", "count", "samples")

    def __init__(self) -> None:
        self.samples: list[int] = []
        #: (bound, slot), sorted by bound
        self.buckets: list[tuple[float, int]] = []
        #: the histogram's ``_count`` slot, ``-1`` for none
        self.count = -1


class Plan:
    """A family's series in page order, for a scrape in which all of them have a value
    (the usual case: only a histogram's ``_count`` is not in any file)."""

    __slots__ = ("groups", "order", "required", "size")

    def __init__(self, family: Family) -> None:
        self.size = len(family.slots)
        #: per group: its buckets (in bound order), then its other series
        self.groups: list[tuple[list[int], list[int]]] = []
        #: every slot in page order, each bucket group's _count after its buckets
        self.order: list[int] = []
        required: list[int] = []
        for group in family.groups.values():
            buckets = [slot for _, slot in group.buckets]
            samples = list(group.samples)
            if buckets:
                self.order += [*buckets, group.count]
            elif group.count >= 0:
                samples.insert(0, group.count)
            self.order += samples
            self.groups.append((buckets, samples))
            required += buckets + samples
        #: what must have a value for the plan to hold
        self.required = frozenset(required)


class Family:
    """A metric family: its type and help come from the first key that named it."""

    __slots__ = ("_plan", "groups", "help", "name", "slots", "typ")

    def __init__(self, name: str, typ: str, help_text: str) -> None:
        self.name = name
        self.typ = typ
        self.help = help_text
        #: every slot of the family, in the order they were made
        self.slots: list[int] = []
        self.groups: dict[Labels, Group] = {}
        self._plan: Plan | None = None

    @property
    def plan(self) -> Plan:
        plan = self._plan
        if plan is None or plan.size != len(self.slots):
            plan = self._plan = Plan(self)
        return plan

    def group(self, labels: Labels) -> Group:
        group = self.groups.get(labels)
        if group is None:
            group = self.groups[labels] = Group()
        return group


class SeriesTable:
    """Every series this process has seen in one directory, each with a slot number.

    Only ever grows (slots are never renumbered); it is replaced whole when it holds too
    many series (see :data:`LIMIT`).
    """

    def __init__(self, lock: threading.RLock | None = None) -> None:
        #: held while the table is read or grown (by whoever reads the directory)
        self.lock = lock if lock is not None else threading.RLock()
        self.families: dict[str, Family] = {}
        #: per slot: sample name, labels as served, family
        self.names: list[str] = []
        self.labels: list[dict[str, str]] = []
        self.family_of: list[Family] = []
        #: (raw key, pid label or "") -> slot, for the keys met already
        self.known: dict[tuple[bytes, str], int] = {}
        #: (family, sample name, labels) or (family, None, labels, bound) -> slot: keys
        #: that differ (help text, "1" and "1.0" bounds) but name the same series share it
        self._by_series: dict[tuple[object, ...], int] = {}
        #: groups of buckets waiting for their _count series (see settle)
        self._counts: list[tuple[Family, Labels]] = []

    def __len__(self) -> int:
        return len(self.names)

    def slot(self, key: bytes, typ: str, pid: str = "") -> int:
        """The slot of the series *key* names in a file of type *typ*; *pid*, for ``all``
        gauges, is the process the series belongs to. Call :meth:`settle` after the keys
        of a file.

        :raises ValueError: *key* is not a key prometheus_client writes.
        """
        found = self.known.get((key, pid))
        if found is not None:
            return found
        parsed = parse_key(key)
        family = self.families.get(parsed.family)
        if family is None:
            # prometheus_client's check of the name (its collector would fail on the page).
            Metric(parsed.family, parsed.help, typ)
            family = self.families[parsed.family] = Family(parsed.family, typ, parsed.help)
        if parsed.le is not None and family.typ == "histogram":
            slot = self._bucket(family, parsed.without_le, parsed.le)
        else:
            labels = (*parsed.labels, ("pid", pid)) if pid else parsed.labels
            slot = self._sample(family, parsed.name, labels)
        self.known[(key, pid)] = slot
        return slot

    def _new(self, family: Family, name: str, labels: dict[str, str]) -> int:
        slot = len(self.names)
        self.names.append(name)
        self.labels.append(labels)
        self.family_of.append(family)
        family.slots.append(slot)
        return slot

    def _sample(self, family: Family, name: str, labels: Labels) -> int:
        ident = (family.name, name, labels)
        slot = self._by_series.get(ident)
        if slot is None:
            slot = self._by_series[ident] = self._new(family, name, dict(labels))
            group = family.group(labels)
            if family.typ == "histogram" and name == family.name + "_count":
                if group.count < 0:
                    group.count = slot
                # else: a second key for the same series, already the group's count
            else:
                group.samples.append(slot)
        return slot

    def _bucket(self, family: Family, without_le: Labels, le: float) -> int:
        ident = (family.name, None, without_le, le)
        slot = self._by_series.get(ident)
        if slot is None:
            labels = {**dict(without_le), "le": floatToGoString(le)}  # type: ignore[no-untyped-call]
            slot = self._by_series[ident] = self._new(family, family.name + "_bucket", labels)
            group = family.group(without_le)
            insort(group.buckets, (le, slot))
            if group.count < 0:
                self._counts.append((family, without_le))
        return slot

    def settle(self) -> None:
        """Give each new group of buckets its ``_count`` series.

        Done after a file's keys, not with its first bucket, so that the series of a file
        have consecutive slots (see the reader's runs).
        """
        for family, without_le in self._counts:
            group = family.group(without_le)
            if group.count < 0:
                # The cumulative count of the buckets; a file's own _count of the same
                # labels, if one comes, is this same series.
                group.count = self._sample(family, family.name + "_count", without_le)
        self._counts.clear()


#: A table holding more series than this is replaced by an empty one before a scrape.
LIMIT = 500_000


class Aggregate:
    """One scrape's values: by slot, and which slots and families have any."""

    __slots__ = ("families", "present", "stamps", "table", "values")

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self.values: list[float] = []
        self.present: set[int] = set()
        #: the timestamps of ``mostrecent`` gauges' values
        self.stamps: dict[int, float] = {}
        #: families any file read names, even if none of their series has a value
        self.families: set[str] = set()

    def page_values(self, family: Family) -> list[float] | None:
        """The values of :attr:`Family.plan`'s order, ``None`` unless every series has one."""
        plan = family.plan
        if not self.present.issuperset(plan.required):
            return None
        get = self.values.__getitem__
        out: list[float] = []
        for buckets, samples in plan.groups:
            if buckets:
                # Cumulative, from 0.0 as prometheus_client adds them; the last is _count.
                cumulative = accumulate(map(get, buckets), initial=0.0)
                next(cumulative)
                out.extend(cumulative)
                out.append(out[-1])
            out.extend(map(get, samples))
        return out

    def lines(self, family: Family) -> Iterator[tuple[int, float]]:
        """``(slot, value)`` of the family's series that have a value, in page order."""
        values = self.values
        present = self.present
        for group in family.groups.values():
            if group.buckets:
                acc = 0.0
                seen = False
                for _, slot in group.buckets:
                    if slot in present:
                        acc += values[slot]
                        seen = True
                        yield slot, acc
                if seen:
                    yield group.count, acc
                elif group.count in present:
                    yield group.count, values[group.count]
            elif group.count >= 0 and group.count in present:
                yield group.count, values[group.count]
            for slot in group.samples:
                if slot in present:
                    yield slot, values[slot]

    def metric(self, family: Family) -> Metric:
        """The family as a prometheus_client :class:`Metric`."""
        table = self.table
        metric = Metric(family.name, family.help, family.typ)
        names, labels = table.names, table.labels
        for slot, value in self.lines(family):
            metric.add_sample(names[slot], dict(labels[slot]), value)
        return metric

    def metrics(self) -> list[Metric]:
        """Every family a file named, in the order they were first seen."""
        with self.table.lock:
            return [
                self.metric(family)
                for name, family in self.table.families.items()
                if name in self.families
            ]
