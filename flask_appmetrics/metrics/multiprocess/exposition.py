"""The multiprocess page, rendered from a scrape's slots.

prometheus_client's encoders (the text format, OpenMetrics, each escaping scheme) build
every line from the sample's name and labels: sorting, escaping and quoting them is most
of the cost of a page. A series' line, up to its value, is the same from one scrape to the
next, so it is made once, by the encoder itself, and kept: a scrape then writes each line
as that text, the value (formatted as prometheus_client formats it) and a newline.

Nothing is assumed about the format: the first time an encoder meets a family, the family
is encoded by it (with this scrape's values, and that text goes on the page), and the text
is cut into the family's header (its ``#`` lines) and one line per series, each of which
must end with a space and the value that was given. An encoder whose output is not like
that (an unknown format) is not cut: the page is then encoded whole, as prometheus_client
would, and no faster.

Exemplars (OpenMetrics) are written after their buckets' lines, in the text the encoder
itself writes for them: checked once per encoder on a sample of its own, and the page is
encoded whole where it differs.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from .exemplar_file import BucketKey, Stored
from .series import Aggregate, Family, SeriesTable

Encoder = Callable[[Collector], bytes]

#: Encoders remembered per table (one per format and escaping a scraper asks for).
_ENCODERS_LIMIT = 8


class Collected(Collector):
    """A collector of metrics already collected."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


#: From here on Go writes a number with an exponent where Python does not.
_GO_EXPONENT = 1e6


def format_value(value: float) -> str:
    """``floatToGoString(value)``, without its checks for the values that are their
    ``repr`` (all but infinities, NaN, and positive numbers of seven digits or more
    before the point, which Go writes with an exponent)."""
    text = repr(value)
    if text[-1] in "fn" or (value > 0 and text.find(".") > 6):
        return floatToGoString(value)  # type: ignore[no-untyped-call, no-any-return]
    return text


class _Rendering:
    """One encoder's text for the families and series of one table."""

    __slots__ = (
        "done", "encoder", "exemplar_format", "headers", "ordered", "prefixes", "trailer"
    )  # fmt: skip

    def __init__(self, encoder: Encoder, trailer: str) -> None:
        self.encoder = encoder
        #: what the encoder writes after the last family (OpenMetrics' ``# EOF``)
        self.trailer = trailer
        self.headers: dict[str, str] = {}
        #: per slot, its line up to the value
        self.prefixes: list[str] = []
        #: per family, how many of its slots have their line
        self.done: dict[str, int] = {}
        #: per family, the prefixes in the order of its plan, and the plan's size
        self.ordered: dict[str, tuple[int, list[str]]] = {}
        #: whether exemplars are written as :func:`exemplar_suffix` writes them (``None``:
        #: not checked yet)
        self.exemplar_format: bool | None = None

    def learn(
        self, table: SeriesTable, family: Family, slots: list[int], values: list[float]
    ) -> str | None:
        """Encode *slots* of *family* with *values*, keep each one's line up to the value
        and the family's header; return the lines (the header left out), or ``None`` if
        the encoder's text cannot be cut into lines."""
        metric = Metric(family.name, family.help, family.typ)
        names, labels = table.names, table.labels
        for slot, value in zip(slots, values, strict=True):
            metric.add_sample(names[slot], labels[slot], value)
        try:
            text = self.encoder(Collected([metric])).decode("utf-8")
        except Exception:
            return None
        if not text.endswith(self.trailer):
            return None
        text = text[: len(text) - len(self.trailer)]
        lines = text.split("\n")
        if lines.pop() != "":
            return None
        count = len(lines) - len(slots)
        if count < 0 or not all(line.startswith("#") for line in lines[:count]):
            return None
        prefixes = self.prefixes
        if len(prefixes) < len(table):
            prefixes.extend([""] * (len(table) - len(prefixes)))
        for slot, line, value in zip(slots, lines[count:], values, strict=True):
            written = " " + format_value(value)
            if line.startswith("#") or not line.endswith(written):
                return None
            prefixes[slot] = line[: len(line) - len(written) + 1]
        header = "".join(line + "\n" for line in lines[:count])
        self.headers[family.name] = header
        return text[len(header) :]

    def writes_exemplars_as(self, label: str) -> bool:
        """Whether the encoder writes an exemplar as :func:`exemplar_suffix` does, after
        the sample's value (checked once per encoder on a sample of its own)."""
        if self.exemplar_format is None:
            self.exemplar_format = writes_exemplars_as(self.encoder, label)
        return self.exemplar_format

    def learn_all(self, table: SeriesTable, family: Family) -> bool:
        """Encode the family's series that have no line yet (with a value of 0)."""
        new = family.slots[self.done.get(family.name, 0) :]
        if self.learn(table, family, new, [0.0] * len(new)) is None:
            return False
        self.done[family.name] = len(family.slots)
        return True


_UNSUPPORTED = object()
_RENDERINGS: weakref.WeakKeyDictionary[SeriesTable, dict[object, object]] = (
    weakref.WeakKeyDictionary()
)
_RENDERINGS_LOCK = threading.Lock()


def _key(encoder: Encoder) -> object:
    """What identifies an encoder: ``choose_encoder`` makes a new ``partial`` per request."""
    if isinstance(encoder, functools.partial):
        return (encoder.func, encoder.args, tuple(sorted(encoder.keywords.items())))
    return encoder


def _rendering(table: SeriesTable, encoder: Encoder) -> _Rendering | None:
    try:
        key = _key(encoder)
        hash(key)
    except TypeError:
        return None
    with _RENDERINGS_LOCK:
        renderings = _RENDERINGS.setdefault(table, {})
        found = renderings.pop(key, None)
        if found is None:
            if len(renderings) >= _ENCODERS_LIMIT:
                del renderings[next(iter(renderings))]
            try:
                found = _Rendering(encoder, encoder(Collected(())).decode("utf-8"))
            except Exception:  # encoded whole instead, where it fails the same way
                found = _UNSUPPORTED
        renderings[key] = found  # most recently used last
    return found if isinstance(found, _Rendering) else None


def _unsupported(table: SeriesTable, encoder: Encoder) -> None:
    with _RENDERINGS_LOCK:
        _RENDERINGS.setdefault(table, {})[_key(encoder)] = _UNSUPPORTED


def exemplar_suffix(label: str, trace: str, value: float, timestamp: float) -> str:
    """What prometheus_client's OpenMetrics encoders write after a sample's value for its
    exemplar ``{label: trace}`` (a trace id: nothing in it to escape)."""
    return f' # {{{label}="{trace}"}} {format_value(value)} {timestamp}'


def writes_exemplars_as(encoder: Encoder, label: str) -> bool:
    """Whether *encoder* writes an exemplar ``{label: <trace id>}`` as
    :func:`exemplar_suffix` does, right after the sample's value."""
    trace, value, timestamp = "4bf92f3577b34da6a3ce929d0e0e4736", 0.25, 1700000000.5

    def page(exemplar: Exemplar | None) -> str:
        metric = Metric("appmetrics_probe", "probe", "histogram")
        metric.add_sample("appmetrics_probe_bucket", {"le": "1.0"}, 3.0, exemplar=exemplar)
        return encoder(Collected((metric,))).decode("utf-8")

    try:
        plain = page(None)
        marked = page(Exemplar({label: trace}, value, timestamp))
    except Exception:
        return False
    suffix = exemplar_suffix(label, trace, value, timestamp)
    return plain.count(" 3.0\n") == 1 and marked == plain.replace(" 3.0\n", f" 3.0{suffix}\n")


#: Per table: how many series it had, and the slot of each bucket by (sample name, labels).
_BUCKETS: weakref.WeakKeyDictionary[SeriesTable, tuple[int, dict[BucketKey, int]]] = (
    weakref.WeakKeyDictionary()
)


def _bucket_slots(table: SeriesTable) -> dict[BucketKey, int]:
    """The slot of each bucket series of *table* (the caller holds its lock)."""
    known = _BUCKETS.get(table)
    if known is not None and known[0] == len(table):
        return known[1]
    names, labels = table.names, table.labels
    index = {
        (name, tuple(sorted(labels[slot].items()))): slot
        for slot, name in enumerate(names)
        if name.endswith("_bucket")
    }
    _BUCKETS[table] = (len(table), index)
    return index


def _suffixes(
    table: SeriesTable, exemplars: Mapping[BucketKey, Stored], label: str
) -> dict[str, dict[int, str]]:
    """Each exemplar's suffix by family and slot (the caller holds the table's lock)."""
    slots = _bucket_slots(table)
    family_of = table.family_of
    out: dict[str, dict[int, str]] = {}
    for key, (trace, value, timestamp) in exemplars.items():
        slot = slots.get(key)
        if slot is not None:
            by_slot = out.setdefault(family_of[slot].name, {})
            by_slot[slot] = exemplar_suffix(label, trace, value, timestamp)
    return out


def carries_exemplars(encoder: Encoder) -> bool:
    """Whether *encoder* writes exemplars (prometheus_client's OpenMetrics encoders do, the
    text format's do not)."""
    func = encoder.func if isinstance(encoder, functools.partial) else encoder
    return str(getattr(func, "__module__", "")).startswith("prometheus_client.openmetrics")


def render(
    aggregate: Aggregate,
    encoder: Encoder,
    exclude: frozenset[str] = frozenset(),
    *,
    exemplars: Mapping[BucketKey, Stored] | None = None,
    exemplar_label: str = "trace_id",
) -> str | None:
    """The families of *aggregate* but *exclude*, as *encoder* writes them (without what it
    writes at the end of a page); ``None`` when the encoder's text cannot be cut into lines
    (encode the families whole instead).

    :param exemplars: exemplars to write after their buckets' values, as *encoder* writes
        them (``{exemplar_label: trace}``); ``None`` is returned if it writes them otherwise.
    """
    table = aggregate.table
    with table.lock:
        rendering = _rendering(table, encoder)
        if rendering is None:
            return None
        suffixes: dict[str, dict[int, str]] = {}
        if exemplars:
            if not rendering.writes_exemplars_as(exemplar_label):
                return None
            suffixes = _suffixes(table, exemplars, exemplar_label)
        out: list[str] = []
        append = out.append
        done = rendering.done
        headers = rendering.headers
        touched = aggregate.families
        for name, family in table.families.items():
            if name not in touched or name in exclude:
                continue
            marked = suffixes.get(name)
            if marked is not None:
                if not _write_marked(rendering, aggregate, family, marked, append):
                    _unsupported(table, encoder)
                    return None
                continue
            values = aggregate.page_values(family)
            learned = done.get(name, -1) == len(family.slots)
            if not learned and values is not None:
                # Encoded with this scrape's values: the text is the page's, as it is.
                text = rendering.learn(table, family, family.plan.order, values)
                if text is None:
                    _unsupported(table, encoder)
                    return None
                done[name] = len(family.slots)
                append(headers[name])
                append(text)
                continue
            if not learned and not rendering.learn_all(table, family):
                _unsupported(table, encoder)
                return None
            prefixes = rendering.prefixes
            append(headers[name])
            if values is None:  # some series have no value in this scrape
                for slot, value in aggregate.lines(family):
                    append(prefixes[slot])
                    append(format_value(value))
                    append("\n")
                continue
            if not values:
                continue
            ordered = rendering.ordered.get(name)
            plan = family.plan
            if ordered is None or ordered[0] != plan.size:
                ordered = rendering.ordered[name] = (plan.size, [prefixes[s] for s in plan.order])
            append("\n".join(map(operator.add, ordered[1], _formatted(values))))
            append("\n")
        return "".join(out)


def _write_marked(
    rendering: _Rendering,
    aggregate: Aggregate,
    family: Family,
    marked: Mapping[int, str],
    append: Callable[[str], None],
) -> bool:
    """Write *family* line by line, each bucket in *marked* followed by its exemplar;
    ``False`` if the encoder's text for its new series cannot be cut into lines."""
    if rendering.done.get(family.name, -1) != len(family.slots) and not rendering.learn_all(
        aggregate.table, family
    ):
        return False
    prefixes = rendering.prefixes
    append(rendering.headers[family.name])
    for slot, value in aggregate.lines(family):
        append(prefixes[slot])
        append(format_value(value))
        append(marked.get(slot, ""))
        append("\n")
    return True


def _formatted(values: list[float]) -> Iterator[str]:
    # repr is Go's format for all finite values below 1e6 (see format_value): checked for
    # the whole list at C speed, then formatted at C speed.
    if all(map(math.isfinite, values)) and max(values) < _GO_EXPONENT:
        return map(repr, values)
    return map(format_value, values)
