"""The app's own metrics (business counters and the like), declared once per registry.

::

    subtopics = metrics.counter("subtopics_generated_total", "Subtopics generated")
    images = metrics.counter(
        "images_generated_total", "Images generated", ["source"],
        allowed={"source": ["ai", "stock"]},
    )
    quality = metrics.histogram(
        "content_quality_score", "Quality score of generated content", ["content_type"],
        buckets=(0.2, 0.4, 0.6, 0.8, 1.0), max_values=10,
    )

    subtopics.inc()
    images.labels(source="ai").inc()            # anything not allowed counts as "other"
    quality.labels(content_type="lesson").observe(0.9)

Declaring is safe anywhere (module level, in an app factory, in every test): the same
definition in the same registry returns the same :class:`CustomMetric`; a collector of
that name already registered by other code is adopted if it has the same type and labels
(else :class:`~flask_appmetrics.errors.MetricConflictError`). Label values are bounded: a
label with an allow-list maps every other value to ``"other"``; one without keeps its
first *max_values* distinct values, then maps new ones to ``"other"``.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ._domain import ValueFunction, register_cache_layer
from ._labels import OVERFLOW_VALUE, BoundedLabel
from ._registration import Kind, Metric, MetricSpec, declare
from .errors import MetricConflictError

#: Distinct values a label without an allow-list keeps before new ones become ``"other"``.
DEFAULT_MAX_VALUES = 50
# Series created at 0 up front when every label has an allow-list, at most this many.
_MAX_PRECREATED = 1000


@dataclass(frozen=True)
class _Definition:
    kind: Kind
    labelnames: tuple[str, ...]
    allowed: tuple[tuple[str, frozenset[str]], ...]
    max_values: int
    buckets: tuple[float, ...] | None

    def describe(self) -> str:
        allowed = {name: sorted(values) for name, values in self.allowed}
        return (
            f"a {self.kind} with labels ({', '.join(self.labelnames) or 'no labels'}), "
            f"allowed={allowed}, max_values={self.max_values}, buckets={self.buckets}"
        )


class CustomMetric:
    """A declared metric whose label values stay bounded.

    Use it like the prometheus_client metric it wraps: ``.labels(...)`` then ``.inc()``,
    ``.set()`` or ``.observe()``; without labels, call those directly. :attr:`metric` is
    the underlying collector.
    """

    def __init__(self, name: str, definition: _Definition, metric: Metric) -> None:
        self.name = name
        self.kind = definition.kind
        self.labelnames = definition.labelnames
        self.metric = metric
        self._definition = definition
        allowed = dict(definition.allowed)
        self._bounds = tuple(
            BoundedLabel(definition.max_values, allowed=allowed.get(label))
            for label in definition.labelnames
        )

    def labels(self, *values: object, **by_name: object) -> Any:
        """The child for these label values, each mapped into its bounded set.

        :raises ValueError: wrong number or names of labels (as prometheus_client).
        """
        if values and by_name:
            raise ValueError("pass label values by position or by name, not both")
        if by_name:
            if set(by_name) != set(self.labelnames):
                raise ValueError(
                    f"{self.name}: expected labels {list(self.labelnames)}, got {sorted(by_name)}"
                )
            values = tuple(by_name[label] for label in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(
                f"{self.name}: expected {len(self.labelnames)} label values, got {len(values)}"
            )
        bounded = [bound(str(value)) for bound, value in zip(self._bounds, values, strict=True)]
        return self.metric.labels(*bounded)

    def _target(self) -> Any:
        return self.metric

    def inc(self, amount: float = 1.0) -> None:
        """Add *amount* (counter or gauge without labels)."""
        self._target().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount* (gauge without labels)."""
        self._target().dec(amount)

    def set(self, value: float) -> None:
        """Set the value (gauge without labels)."""
        self._target().set(value)

    def observe(self, value: float) -> None:
        """Observe *value* (histogram without labels)."""
        self._target().observe(value)

    def record(self, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Apply *value* the way the kind of metric takes one: add it to a counter, set a
        gauge to it, observe it in a histogram (used by the ``business_event`` signal)."""
        target: Any = self.labels(**(labels or {})) if self.labelnames else self.metric
        if self.kind == "counter":
            target.inc(value)
        elif self.kind == "gauge":
            target.set(value)
        else:
            target.observe(value)

    def _precreate(self) -> None:
        allowed = dict(self._definition.allowed)
        if self.kind != "counter" or not self.labelnames:
            return
        if not all(label in allowed for label in self.labelnames):
            return
        choices = [sorted(allowed[label]) for label in self.labelnames]
        for combination in itertools.islice(itertools.product(*choices), _MAX_PRECREATED):
            self.metric.labels(*combination)


_declared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, CustomMetric]] = (
    weakref.WeakKeyDictionary()
)
_declared_lock = threading.Lock()


def declare_metric(
    registry: CollectorRegistry,
    kind: Kind,
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    *,
    allowed: Mapping[str, Iterable[str]] | None = None,
    max_values: int = DEFAULT_MAX_VALUES,
    buckets: Sequence[float] | None = None,
    multiprocess_mode: str = "livesum",
) -> CustomMetric:
    """Declare (or return the already declared) metric *name* in *registry*.

    *multiprocess_mode* (gauges only) is how prometheus_client's multiprocess mode
    (gunicorn workers) combines the workers' values: ``livesum`` (default: the sum over
    live workers), ``liveall``, ``livemax``, ``livemin``, ``livemostrecent``, ``all``,
    ``sum``, ``max``, ``min``, ``mostrecent``. It has no effect in a single process.

    :raises MetricConflictError: *name* is declared with another definition, or taken by an
        incompatible collector.
    :raises ValueError: *allowed* names a label the metric does not have, or *max_values*
        is below 1.
    """
    if isinstance(labelnames, str):
        raise TypeError(f"{name}: labelnames must be a list of names, not a string")
    labels = tuple(labelnames)
    if max_values < 1:
        raise ValueError(f"{name}: max_values must be at least 1, got {max_values}")
    allow = {label: frozenset(values) for label, values in (allowed or {}).items()}
    unknown = set(allow) - set(labels)
    if unknown:
        raise ValueError(f"{name}: allowed names unknown labels {sorted(unknown)}")
    definition = _Definition(
        kind=kind,
        labelnames=labels,
        allowed=tuple(sorted(allow.items())),
        max_values=max_values,
        buckets=tuple(buckets) if buckets is not None else None,
    )
    with _declared_lock:
        known = _declared.setdefault(registry, {})
        existing = known.get(name)
        if existing is not None:
            if existing._definition != definition:
                raise MetricConflictError(
                    name, existing._definition.describe(), definition.describe()
                )
            return existing
        spec = MetricSpec(
            kind,
            name,
            documentation,
            labels,
            buckets=definition.buckets,
            multiprocess_mode=multiprocess_mode,
        )
        custom = CustomMetric(name, definition, declare(registry, spec))
        custom._precreate()
        known[name] = custom
        return custom


def declared_metric(registry: CollectorRegistry, name: str) -> CustomMetric | None:
    """The metric *name* declared in *registry* through this module, if any."""
    with _declared_lock:
        return _declared.get(registry, {}).get(name)


class CustomMetricsMixin:
    """The custom-metric and cache-layer methods of :class:`~flask_appmetrics.FlaskMetrics`."""

    @property
    def registry(self) -> CollectorRegistry:  # pragma: no cover - provided by FlaskMetrics
        raise NotImplementedError

    def counter(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        allowed: Mapping[str, Iterable[str]] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
    ) -> CustomMetric:
        """Declare a counter in this extension's registry (once; see :mod:`.custom`).

        :param name: the family name, ending in ``_total``.
        :param labelnames: label names, in order.
        :param allowed: per label, the values kept; any other becomes ``"other"``.
        :param max_values: for labels without an allow-list, distinct values kept.
        """
        return declare_metric(
            self.registry,
            "counter",
            name,
            documentation,
            labelnames,
            allowed=allowed,
            max_values=max_values,
        )

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        allowed: Mapping[str, Iterable[str]] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        multiprocess_mode: str = "livesum",
    ) -> CustomMetric:
        """Declare a gauge in this extension's registry (once; see :meth:`counter`).

        :param multiprocess_mode: how gunicorn workers' values combine (see
            :func:`declare_metric`); ``livesum`` by default.
        """
        return declare_metric(
            self.registry,
            "gauge",
            name,
            documentation,
            labelnames,
            allowed=allowed,
            max_values=max_values,
            multiprocess_mode=multiprocess_mode,
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
        allowed: Mapping[str, Iterable[str]] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
    ) -> CustomMetric:
        """Declare a histogram in this extension's registry (once; see :meth:`counter`).

        :param buckets: upper bounds; prometheus_client's defaults if ``None``.
        """
        return declare_metric(
            self.registry,
            "histogram",
            name,
            documentation,
            labelnames,
            allowed=allowed,
            max_values=max_values,
            buckets=buckets,
        )

    def register_cache_layer(
        self,
        layer: str,
        *,
        size_bytes: ValueFunction | None = None,
        items: ValueFunction | None = None,
    ) -> None:
        """Report a cache layer's size in ``cache_size_bytes{layer}`` and item count in
        ``cache_items_count{layer}``, calling *size_bytes* and *items* at each scrape.

        A callable that raises (or returns ``None``) leaves its sample out of that scrape
        and counts ``flask_appmetrics_internal_errors_total{component="scrape_value"}``;
        ``/metrics`` still answers. May be called before ``init_app``. Registering a layer
        again replaces its callables.
        """
        register_cache_layer(self.registry, layer, size_bytes=size_bytes, items=items)


__all__ = [
    "DEFAULT_MAX_VALUES",
    "OVERFLOW_VALUE",
    "CustomMetric",
    "CustomMetricsMixin",
    "declare_metric",
    "declared_metric",
]
