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
first *max_values* distinct values (in each process: under a pre-fork server every worker
started admits its own, and exited workers' stay on the page), then maps new ones to
``"other"``; every value is capped at ``APPMETRICS_MAX_LABEL_LENGTH`` bytes (see
:func:`flask_appmetrics.metrics.labels.cap_length`).

Calls are validated as the ``business_event`` signal validates its payload: a label value
that is not a non-empty string, an amount that is not a finite number (or is negative for
a counter or histogram), a method the kind of metric does not have: under
``APPMETRICS_STRICT`` (of the app in context, else of the most recently initialised app)
that raises ``TypeError``/``ValueError`` naming the field; otherwise it is logged and
nothing is recorded. No call raises into the app otherwise, and no value can make the
metric NaN or infinite.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from ..errors import MetricConflictError, count_internal_error
from ..recording import validation as check
from .labels import OVERFLOW_VALUE, BoundedLabel
from .registration import Kind, Metric, MetricSpec, declare
from .registry_state import RegistryBound, RegistryState, registry_state

logger = logging.getLogger("flask_appmetrics")

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


#: The value-taking methods each kind of metric has.
_METHODS: dict[str, tuple[str, ...]] = {
    "counter": ("inc",),
    "gauge": ("inc", "dec", "set"),
    "histogram": ("observe",),
}


class CustomMetric:
    """A declared metric whose label values stay bounded and whose calls are validated.

    Use it like the prometheus_client metric it wraps: ``.labels(...)`` then ``.inc()``,
    ``.set()`` or ``.observe()``; without labels, call those directly. :attr:`metric` is
    the underlying collector (calls to it directly are neither bounded nor validated).
    """

    def __init__(
        self, name: str, definition: _Definition, metric: Metric, state: RegistryState
    ) -> None:
        self.name = name
        self.kind = definition.kind
        self.labelnames = definition.labelnames
        self.metric = metric
        self._definition = definition
        # Weakly: the registry's state holds this metric.
        self._state = weakref.ref(state)
        allowed = dict(definition.allowed)
        # The registry's cap, set by APPMETRICS_MAX_LABEL_LENGTH when an app is initialised.
        length = state.label_length
        self._bounds = tuple(
            BoundedLabel(definition.max_values, allowed=allowed.get(label), length=length)
            for label in definition.labelnames
        )
        # Series by bounded label values: bounded like them.
        self._series: dict[tuple[str, ...], Series] = {}
        self._lock = threading.Lock()
        self._unlabelled = None if self.labelnames else Series(self, metric)

    # -- validation, shared with the business_event signal ---------------------------------

    def label_values(self, labels: object) -> tuple[str, ...]:
        """Validate *labels* (a mapping of every label name to a value; ``None`` for none).

        :raises TypeError, ValueError: naming the field (``labels`` or ``labels.<name>``).
        """
        if labels is None:
            labels = {}
        if not isinstance(labels, Mapping):
            raise TypeError(
                f"labels: expected a mapping of label name to value, got {check.shown(labels)}"
            )
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"labels: {self.name} takes {list(self.labelnames)}, "
                f"got {check.shown([str(key) for key in labels])}"
            )
        return tuple(check.label(f"labels.{name}", labels[name]) for name in self.labelnames)

    def amount(self, field: str, value: object, method: str) -> float:
        """Validate *value* for *method* (``inc``, ``dec``, ``set``, ``observe``).

        A counter only goes up, and a histogram's ``_sum`` is a counter only without
        negative observations (``rate()`` of it would be wrong); a gauge takes any finite
        value.

        :raises TypeError, ValueError: naming *field*, or the method if this kind of metric
            has no such method.
        """
        if method not in _METHODS[self.kind]:
            usable = " or ".join(f"{m}()" for m in _METHODS[self.kind])
            raise TypeError(f"{method}: {self.name} is a {self.kind}; it takes {usable}")
        minimum = None if self.kind == "gauge" else 0.0
        return check.number(field, value, minimum=minimum)

    # -- the prometheus_client-like API --------------------------------------------------

    def labels(self, *values: object, **by_name: object) -> Series:
        """The series for these label values (by position or by name), each validated and
        mapped into its bounded set.

        Bad label values or names are refused like any bad input (see the module
        docstring): outside strict mode the series returned records nothing.
        """
        try:
            if not self.labelnames:
                raise ValueError(f"labels: {self.name} has no labels; call its methods directly")
            if values and by_name:
                raise ValueError("labels: pass label values by position or by name, not both")
            if not by_name:
                if len(values) != len(self.labelnames):
                    raise ValueError(
                        f"labels: {self.name} takes {len(self.labelnames)} label values "
                        f"{list(self.labelnames)}, got {len(values)}"
                    )
                by_name = dict(zip(self.labelnames, values, strict=True))
            label_values = self.label_values(by_name)
        except (TypeError, ValueError) as error:
            self.refuse("labels", error)
            return DROPPED
        try:
            return self.series(label_values)
        except Exception:
            self.failed()
            return DROPPED

    def series(self, label_values: tuple[str, ...]) -> Series:
        """The series for validated *label_values* (see :meth:`label_values`)."""
        bounded = tuple(
            bound(value) for bound, value in zip(self._bounds, label_values, strict=True)
        )
        series = self._series.get(bounded)
        if series is None:
            with self._lock:
                series = self._series.get(bounded)
                if series is None:
                    series = self._series[bounded] = Series(self, self.metric.labels(*bounded))
        return series

    def _unlabelled_series(self) -> Series:
        """The one series of a metric without labels; for one with labels, a refusal."""
        if self._unlabelled is None:
            self.refuse(
                "call",
                ValueError(
                    f"labels: {self.name} has labels {list(self.labelnames)}; "
                    "call .labels(...) first"
                ),
            )
            return DROPPED
        return self._unlabelled

    def inc(self, amount: float = 1.0) -> None:
        """Add *amount* (counter or gauge without labels)."""
        self._unlabelled_series().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount* (gauge without labels)."""
        self._unlabelled_series().dec(amount)

    def set(self, value: float) -> None:
        """Set the value (gauge without labels)."""
        self._unlabelled_series().set(value)

    def observe(self, value: float) -> None:
        """Observe *value* (histogram without labels)."""
        self._unlabelled_series().observe(value)

    def __getattr__(self, name: str) -> Any:
        """The rest of the prometheus_client metric's API: ``time()``,
        ``count_exceptions()``, ``track_inprogress()``, ``set_function()``... on the series
        without labels (refused, and a no-op, on a metric with labels: call
        ``.labels(...)`` first); ``remove()`` and ``clear()`` on the metric itself."""
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _METRIC_WIDE:
            return getattr(self.metric, name)
        return getattr(self._unlabelled_series(), name)

    def record(self, value: float, label_values: tuple[str, ...] = ()) -> None:
        """Apply a validated *value* the way the kind of metric takes one: add it to a
        counter, set a gauge to it, observe it in a histogram (the ``business_event``
        signal, after :meth:`label_values` and :meth:`amount`)."""
        child: Any = self.series(label_values).child if self.labelnames else self.metric
        if self.kind == "counter":
            child.inc(value)
        elif self.kind == "gauge":
            child.set(value)
        else:
            child.observe(value)

    # -- refusals and failures -------------------------------------------------------------

    def refuse(self, method: str, error: TypeError | ValueError) -> None:
        """Log bad input to *method*, or raise it under strict mode.

        :raises StrictTypeError, StrictValueError: strict mode.
        """
        state = self._state()
        check.reject(f"{self.name}.{method}", error, strict=state is not None and state.strict())

    def failed(self) -> None:
        """Recording valid input failed (a bug of ours or of prometheus_client): log it and
        count it, never raise it into the app."""
        logger.exception(
            "flask-appmetrics failed to record into %s; the caller is unaffected", self.name
        )
        state = self._state()
        if state is not None:
            count_internal_error("custom_metric", state.count_internal_error)

    def _precreate(self) -> None:
        allowed = dict(self._definition.allowed)
        if self.kind != "counter" or not self.labelnames:
            return
        if not all(label in allowed for label in self.labelnames):
            return
        choices = [sorted(allowed[label]) for label in self.labelnames]
        for combination in itertools.islice(itertools.product(*choices), _MAX_PRECREATED):
            self.series(combination)


class Series:
    """One series of a :class:`CustomMetric` (what ``.labels(...)`` returns): ``inc``,
    ``dec``, ``set`` and ``observe`` are validated; anything else (``time()``,
    ``track_inprogress()``...) is the prometheus_client child's own."""

    __slots__ = ("child", "owner")

    def __init__(self, owner: CustomMetric | None, child: Any) -> None:
        self.owner = owner
        self.child = child

    def _apply(self, method: str, field: str, value: object) -> None:
        owner = self.owner
        if owner is None:
            return  # the series of refused labels: records nothing
        try:
            amount = owner.amount(field, value, method)
        except (TypeError, ValueError) as error:
            owner.refuse(method, error)
            return
        try:
            getattr(self.child, method)(amount)
        except Exception:
            owner.failed()

    def inc(self, amount: float = 1.0) -> None:
        """Add *amount*: a finite number, not negative for a counter."""
        self._apply("inc", "amount", amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount* (gauges)."""
        self._apply("dec", "amount", amount)

    def set(self, value: float) -> None:
        """Set the value (gauges)."""
        self._apply("set", "value", value)

    def observe(self, value: float) -> None:
        """Observe *value*: a finite number, not negative (histograms)."""
        self._apply("observe", "value", value)

    def __getattr__(self, name: str) -> Any:
        if self.owner is None:
            return _NoOp()
        return getattr(self.child, name)


class _NoOp:
    """What the methods of a refused series return: a context manager and decorator that
    does nothing (``.time()``, ``.track_inprogress()``), callable with anything."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]  # used as a decorator: the function, untouched
        return self

    def __enter__(self) -> _NoOp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


#: Methods of the whole metric rather than of one series.
_METRIC_WIDE = frozenset({"remove", "clear"})

#: The series ``.labels(...)`` returns for refused labels.
DROPPED = Series(None, None)


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
    state = registry_state(registry)
    with state.lock:
        existing = declared_metric(registry, name)
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
        custom = CustomMetric(name, definition, declare(registry, spec), state)
        custom._precreate()
        state.custom_metrics[name] = custom
        return custom


def declared_metric(registry: CollectorRegistry, name: str) -> CustomMetric | None:
    """The metric *name* declared in *registry* through this module, if any."""
    state = registry_state(registry)
    with state.lock:
        custom = state.custom_metrics.get(name)
    # Only this module stores into custom_metrics: every value is a CustomMetric.
    assert custom is None or isinstance(custom, CustomMetric)
    return custom


class CustomMetricsMixin(RegistryBound):
    """The custom-metric methods of :class:`~flask_appmetrics.FlaskMetrics`."""

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


__all__ = [
    "DEFAULT_MAX_VALUES",
    "OVERFLOW_VALUE",
    "CustomMetric",
    "CustomMetricsMixin",
    "Series",
    "declare_metric",
    "declared_metric",
]
