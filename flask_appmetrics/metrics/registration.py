"""Register a metric in a registry once, adopting a compatible earlier one.

An app that defines its own metrics module next to the extension would otherwise crash
with prometheus_client's ``Duplicated timeseries in CollectorRegistry``: if another module
registered ``http_requests_total`` first, we use its collector when it has the type and
label names we need, and otherwise
raise one :class:`~flask_appmetrics.errors.MetricConflictError` that names both
definitions. We never catch prometheus_client's ``ValueError`` and carry on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics_core import Metric as MetricFamily

from ..errors import MetricConflictError

Kind = Literal["counter", "gauge", "histogram"]
Metric = Counter | Gauge | Histogram

_CLASSES: dict[str, type[Metric]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


@dataclass(frozen=True)
class MetricSpec:
    """What one metric family must look like.

    :param kind: ``counter``, ``gauge`` or ``histogram``.
    :param name: the exposed family name; counters end in ``_total``.
    :param documentation: the HELP text.
    :param labelnames: label names, in order.
    :param buckets: histogram buckets (``None`` for prometheus_client's defaults).
    :param multiprocess_mode: gauge aggregation under prometheus_client's multiprocess mode.
    """

    kind: Kind
    name: str
    documentation: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    multiprocess_mode: str = "all"

    def describe(self) -> str:
        labels = ", ".join(self.labelnames) or "no labels"
        return f"a {self.kind} with labels ({labels})"


def _describe_collector(collector: object) -> str:
    kind = _family(collector).type if isinstance(collector, Metric) else type(collector).__name__
    # prometheus_client private API: a metric's label names (``_labelnames``) have no
    # public accessor, and an unlabelled child's samples do not show them either.
    labels = getattr(collector, "_labelnames", None)
    if labels is None:
        return f"a {kind} ({type(collector).__module__}.{type(collector).__qualname__})"
    return f"a {kind} with labels ({', '.join(labels) or 'no labels'})"


def _lookup(registry: CollectorRegistry, name: str) -> object | None:
    # prometheus_client private API (``_lock``, ``_names_to_collectors``): the registry
    # indexes every sample name a collector produces (``x``, ``x_total``, ``x_created``,
    # ...), so a lookup by the exposed name finds any clash. There is no public accessor;
    # both have been stable since prometheus_client 0.1.
    with registry._lock:
        return registry._names_to_collectors.get(name)


def declare(registry: CollectorRegistry, spec: MetricSpec) -> Metric:
    """Return the registry's collector for *spec*, registering it if absent.

    :raises MetricConflictError: the name is taken by an incompatible collector.
    """
    existing = _lookup(registry, spec.name)
    if existing is not None:
        return _adopt(existing, spec)
    cls = _CLASSES[spec.kind]
    metric: Metric
    if spec.kind == "histogram":
        buckets: Sequence[float] = spec.buckets or Histogram.DEFAULT_BUCKETS
        metric = Histogram(
            spec.name, spec.documentation, spec.labelnames, registry=None, buckets=buckets
        )
    elif spec.kind == "gauge":
        metric = Gauge(
            spec.name,
            spec.documentation,
            spec.labelnames,
            registry=None,
            multiprocess_mode=spec.multiprocess_mode,  # type: ignore[arg-type]
        )
    else:
        metric = cls(spec.name, spec.documentation, spec.labelnames, registry=None)
    try:
        registry.register(metric)
    except ValueError:
        # Another thread registered the same name between our lookup and ours: adopt
        # theirs if compatible, else report the conflict with both definitions.
        existing = _lookup(registry, spec.name)
        if existing is None:
            raise
        return _adopt(existing, spec)
    return metric


def register_collector(registry: CollectorRegistry, collector: Any, names: Iterable[str]) -> None:
    """Register a custom *collector* serving the families *names*.

    :raises MetricConflictError: one of *names* is taken by another collector.
    """
    try:
        registry.register(collector)
    except ValueError:
        for name in names:
            existing = _lookup(registry, name)
            if existing is not None:
                raise MetricConflictError(
                    name, _describe_collector(existing), "a gauge computed at scrape time"
                ) from None
        raise


def declare_all(registry: CollectorRegistry, specs: Iterable[MetricSpec]) -> dict[str, Metric]:
    """Declare every spec, or none: on a conflict, unregister what this call registered.

    :raises MetricConflictError: a name is taken by an incompatible collector.
    """
    declared: dict[str, Metric] = {}
    registered: list[Metric] = []
    try:
        for spec in specs:
            was_there = _lookup(registry, spec.name) is not None
            metric = declare(registry, spec)
            if not was_there:
                registered.append(metric)
            declared[spec.name] = metric
    except BaseException:
        for metric in registered:
            registry.unregister(metric)
        raise
    return declared


def _adopt(existing: object, spec: MetricSpec) -> Metric:
    cls = _CLASSES[spec.kind]
    compatible = (
        isinstance(existing, cls)
        and tuple(existing._labelnames) == spec.labelnames
        # A counter registered as ``x`` also owns ``x_total``: only adopt the family of the
        # exact name, not a collector that merely produces a clashing sample.
        and _family_name(existing) == _family_name_for(spec)
    )
    if not compatible:
        raise MetricConflictError(spec.name, _describe_collector(existing), spec.describe())
    assert isinstance(existing, (Counter, Gauge, Histogram))
    if isinstance(existing, Histogram):
        # prometheus_client private API: a histogram's buckets (``_upper_bounds``) have no
        # public accessor, and an unlabelled histogram's samples only exist per child.
        wanted = [*(spec.buckets or Histogram.DEFAULT_BUCKETS)]
        if wanted[-1] != math.inf:
            wanted.append(math.inf)
        if list(existing._upper_bounds) != wanted:
            raise MetricConflictError(
                spec.name,
                f"{_describe_collector(existing)} and buckets {existing._upper_bounds}",
                f"{spec.describe()} and buckets {wanted}",
            )
    # prometheus_client private API: a gauge's ``_multiprocess_mode`` has no public
    # accessor; it decides what a multiprocess page shows, so a mismatch must be caught.
    if (
        isinstance(existing, Gauge)
        and value_class_is_multiprocess()
        and existing._multiprocess_mode != spec.multiprocess_mode
    ):
        # Only matters across processes: there the mode decides what the page shows.
        raise MetricConflictError(
            spec.name,
            f"{_describe_collector(existing)} in multiprocess mode {existing._multiprocess_mode!r}",
            f"{spec.describe()} in multiprocess mode {spec.multiprocess_mode!r}",
        )
    return existing


def value_class_is_multiprocess() -> bool:
    """Whether prometheus_client chose its mmap-backed value class when it was imported
    (multiprocess mode)."""
    # ``_multiprocess`` is the marker prometheus_client sets on the class it picks from
    # PROMETHEUS_MULTIPROC_DIR at import; no public accessor says which one it picked, and
    # the variable itself may have changed since.
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _family(metric: Metric) -> MetricFamily:
    # ``describe()`` is public and, for a metric of prometheus_client, always one family.
    return next(iter(metric.describe()))


def _family_name(metric: Metric) -> str:
    return _family(metric).name


def _family_name_for(spec: MetricSpec) -> str:
    if spec.kind == "counter" and spec.name.endswith("_total"):
        return spec.name[: -len("_total")]
    return spec.name
