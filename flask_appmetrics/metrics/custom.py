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
:func:`flask_appmetrics.metrics.labels.cap_length`). ``remove()`` and ``clear()`` give
the places of the values they remove back.

A :class:`CustomMetric` offers the API of the prometheus_client metric it wraps:
``labels()``, ``inc()``, ``dec()``, ``set()``, ``observe()`` (with ``exemplar=`` where
prometheus_client takes one), ``set_to_current_time()``, ``time()``,
``count_exceptions()``, ``track_inprogress()``, ``set_function()``, ``remove()``,
``remove_by_labels()``, ``clear()``; the conveniences record through the value calls
(:mod:`flask_appmetrics.metrics.custom_series`). Calls are validated as the
``business_event`` signal validates its payload: a label value that is not a non-empty
string, an amount that is not a finite number (or is negative for a counter or
histogram), a method the kind of metric does not have: under ``APPMETRICS_STRICT`` (of the
app in context, else of the most recently initialised app) that raises
``TypeError``/``ValueError`` naming the field; otherwise it is logged and nothing is
recorded. No call raises into the app otherwise, and no value can make the metric NaN or
infinite.

A metric declared through an extension whose apps were given registries of their own
(``init_app(app, registry=...)``) has one twin per such registry, declared alike: each
call records into the registry of the app in context (else of the most recently
initialised app), when that app is one of the extension's; into the extension's registry
otherwise.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ..errors import MetricConflictError, count_internal_error
from ..recording import validation as check
from .custom_series import (
    DROPPED,
    ExceptionCounter,
    InprogressTracker,
    NoOp,
    Series,
    Timer,
    exception_types,
    value_function,
)
from .labels import OVERFLOW_VALUE, BoundedLabel
from .registration import Kind, Metric, MetricSpec, declare
from .registry_state import RegistryState, registry_state

logger = logging.getLogger("flask_appmetrics")

#: Distinct values a label without an allow-list keeps before new ones become ``"other"``.
DEFAULT_MAX_VALUES = 50
# Series created at 0 up front when every label has an allow-list, at most this many.
_MAX_PRECREATED = 1000

#: Names the registry a call records into now (``None``: the metric's own).
RegistryNow = Callable[[], "CollectorRegistry | None"]


@dataclass(frozen=True)
class _Definition:
    kind: Kind
    labelnames: tuple[str, ...]
    allowed: tuple[tuple[str, frozenset[str]], ...]
    max_values: int
    buckets: tuple[float, ...] | None
    #: Gauges only (``None`` for the others): how gunicorn workers' values combine.
    multiprocess_mode: str | None = None

    def describe(self) -> str:
        allowed = {name: sorted(values) for name, values in self.allowed}
        mode = "" if self.multiprocess_mode is None else f", mode={self.multiprocess_mode}"
        return (
            f"a {self.kind} with labels ({', '.join(self.labelnames) or 'no labels'}), "
            f"allowed={allowed}, max_values={self.max_values}, buckets={self.buckets}{mode}"
        )


#: The value-taking methods each kind of metric has.
_METHODS: dict[str, tuple[str, ...]] = {
    "counter": ("inc",),
    "gauge": ("inc", "dec", "set"),
    "histogram": ("observe",),
}
#: The other methods of prometheus_client each kind has, recorded through the value ones.
_CONVENIENCES: dict[str, tuple[str, ...]] = {
    "counter": ("count_exceptions",),
    "gauge": ("set_to_current_time", "time", "track_inprogress", "set_function"),
    "histogram": ("time",),
}
#: A gauge in these multiprocess modes only takes ``set()`` (prometheus_client's rule).
_SET_ONLY_MODES = frozenset({"mostrecent", "livemostrecent"})


class CustomMetric:
    """A declared metric whose label values stay bounded and whose calls are validated.

    Use it like the prometheus_client metric it wraps (see the module docstring):
    ``.labels(...)`` then ``.inc()``, ``.set()``, ``.observe()``, ``.time()``...; without
    labels, call those directly. :attr:`metric` is the underlying collector (calls to it
    directly are neither bounded nor validated).
    """

    def __init__(
        self,
        name: str,
        definition: _Definition,
        documentation: str,
        metric: Metric,
        state: RegistryState,
    ) -> None:
        self.name = name
        self.kind = definition.kind
        self.labelnames = definition.labelnames
        self.documentation = documentation
        self._collector = metric
        self._definition = definition
        self._set_only = definition.multiprocess_mode in _SET_ONLY_MODES
        # Weakly: the registry's state holds this metric.
        self._state = weakref.ref(state)
        self._registry = weakref.ref(state.registry)
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
        # Where calls record when the extension that declared this metric gives its apps
        # registries of their own: the extension (weakly) says which, twins live there.
        self._followed: tuple[weakref.WeakMethod[RegistryNow], ...] = ()
        self._twins: weakref.WeakKeyDictionary[CollectorRegistry, CustomMetric] = (
            weakref.WeakKeyDictionary()
        )
        # The set_function() of a gauge without labels, which its twins read too.
        self._function: Callable[[], float] | None = None

    @property
    def metric(self) -> Metric:
        """The prometheus_client collector calls record into now (see the module
        docstring); calls to it directly are neither bounded nor validated."""
        here = self._here()
        return (here if here is not None else self)._collector

    # -- which registry a call records into ------------------------------------------------

    def follow(self, registry_now: RegistryNow) -> None:
        """From now on, record where the bound method *registry_now* says (its object held
        weakly), into a twin declared alike in that registry."""
        with self._lock:
            live = tuple(ref for ref in self._followed if ref() is not None)
            if registry_now not in (ref() for ref in live):
                live = (*live, weakref.WeakMethod(registry_now))
            self._followed = live

    def twin(self, registry: CollectorRegistry) -> CustomMetric:
        """This metric declared alike in *registry* (itself for its own registry).

        :raises MetricConflictError: *registry* has an incompatible metric of the name.
        """
        if registry is self._registry():
            return self
        twin = self._twins.get(registry)
        if twin is None:
            definition = self._definition
            twin = declare_metric(
                registry,
                definition.kind,
                self.name,
                self.documentation,
                definition.labelnames,
                allowed=dict(definition.allowed),
                max_values=definition.max_values,
                buckets=definition.buckets,
                multiprocess_mode=definition.multiprocess_mode or "livesum",
            )
            if self._function is not None and twin._unlabelled is not None:
                twin._unlabelled.set_function(self._function)
            self._twins[registry] = twin
        return twin

    def _here(self) -> CustomMetric | None:
        """The metric a call records into now: this one, or its twin in the registry the
        extension that declared it names; ``None`` if that twin cannot be declared."""
        for ref in self._followed:  # empty unless apps have registries of their own
            registry_now = ref()
            registry = registry_now() if registry_now is not None else None
            if registry is not None:
                try:
                    return self.twin(registry)
                except Exception:
                    self.failed()
                    return None
        return self

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

    def allow(self, method: str) -> None:
        """Refuse *method* if this kind of metric has no such method.

        :raises TypeError: naming the method and the ones the kind takes.
        """
        if method not in _METHODS[self.kind] and method not in _CONVENIENCES[self.kind]:
            usable = " or ".join(f"{m}()" for m in _METHODS[self.kind])
            raise TypeError(f"{method}: {self.name} is a {self.kind}; it takes {usable}")
        mode = self._definition.multiprocess_mode
        if self._set_only and method in ("inc", "dec", "track_inprogress"):
            raise TypeError(
                f"{method}: {self.name} is a gauge in multiprocess mode {mode!r}; it takes set()"
            )

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
        if self._set_only:
            self.allow(method)
        minimum = None if self.kind == "gauge" else 0.0
        return check.number(field, value, minimum=minimum)

    def _allowed(self, method: str, *, unlabelled: bool) -> bool:
        """Whether *method* may be called now, on the metric itself when *unlabelled*;
        refused (logged, or raised in strict mode) if not."""
        try:
            self.allow(method)
            if unlabelled and self.labelnames:
                raise ValueError(
                    f"labels: {self.name} has labels {list(self.labelnames)}; "
                    f"call .labels(...).{method}()"
                )
        except (TypeError, ValueError) as error:
            self.refuse(method, error)
            return False
        return True

    # -- the prometheus_client API -------------------------------------------------------

    def labels(self, *values: object, **by_name: object) -> Series:
        """The series for these label values (by position or by name), each validated and
        mapped into its bounded set.

        Bad label values or names are refused like any bad input (see the module
        docstring): outside strict mode the series returned records nothing.
        """
        here = self._here() if self._followed else self
        if here is None:
            return DROPPED
        return here._labels(values, by_name)

    def _labels(self, values: tuple[object, ...], by_name: dict[str, object]) -> Series:
        try:
            label_values = self._label_values_of("labels", values, by_name)
        except (TypeError, ValueError) as error:
            self.refuse("labels", error)
            return DROPPED
        try:
            return self.series(label_values)
        except Exception:
            self.failed()
            return DROPPED

    def _label_values_of(
        self, method: str, values: tuple[object, ...], by_name: Mapping[str, object]
    ) -> tuple[str, ...]:
        """Label values given by position or by name, validated.

        :raises TypeError, ValueError: naming the field.
        """
        if not self.labelnames:
            raise ValueError(f"labels: {self.name} has no labels; call its methods directly")
        if values and by_name:
            raise ValueError(f"labels: pass label values to {method}() by position or by name")
        if not by_name:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"labels: {self.name} takes {len(self.labelnames)} label values "
                    f"{list(self.labelnames)}, got {len(values)}"
                )
            by_name = dict(zip(self.labelnames, values, strict=True))
        return self.label_values(by_name)

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
                    child = self._collector.labels(*bounded)
                    series = self._series[bounded] = Series(self, child)
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

    def _unlabelled_here(self) -> Series:
        if not self._followed and self._unlabelled is not None:
            return self._unlabelled  # the usual case, in one step
        here = self._here()
        return DROPPED if here is None else here._unlabelled_series()

    def inc(self, amount: float = 1.0, exemplar: Mapping[str, str] | None = None) -> None:
        """Add *amount* (counter or gauge without labels); *exemplar* (counters): label
        names to values, such as a trace id, shown on the OpenMetrics page."""
        self._unlabelled_here().inc(amount, exemplar)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount* (gauge without labels)."""
        self._unlabelled_here().dec(amount)

    def set(self, value: float) -> None:
        """Set the value (gauge without labels)."""
        self._unlabelled_here().set(value)

    def observe(self, value: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Observe *value* (histogram without labels); *exemplar* as for :meth:`inc`."""
        self._unlabelled_here().observe(value, exemplar)

    def set_to_current_time(self) -> None:
        """Set the value to the current Unix time (gauge without labels)."""
        self._unlabelled_here().set_to_current_time()

    def time(self) -> Timer | NoOp:
        """Time a block or a function (as a context manager or a decorator): observe its
        duration in seconds (histogram), or set the gauge to it. On a metric with labels,
        call ``.labels(...)`` on the timer inside the block, or time a series."""
        if not self._allowed("time", unlabelled=False):
            return NoOp()
        return Timer(self, "set" if self.kind == "gauge" else "observe")

    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> ExceptionCounter | NoOp:
        """Count the exceptions of type *exception* that leave a block or a function (a
        context manager or a decorator; counter without labels). They go on."""
        if not self._allowed("count_exceptions", unlabelled=True):
            return NoOp()
        try:
            counted = exception_types(exception)
        except TypeError as error:
            self.refuse("count_exceptions", error)
            return NoOp()
        return ExceptionCounter(self, counted)

    def track_inprogress(self) -> InprogressTracker | NoOp:
        """Raise the gauge by 1 while a block or a function runs (a context manager or a
        decorator; gauge without labels)."""
        if not self._allowed("track_inprogress", unlabelled=True):
            return NoOp()
        return InprogressTracker(self)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the gauge's value from *function* at each scrape (gauge without labels; a
        series takes one too), in every registry this metric records into.

        A value that is not a finite number, or an exception of *function*, is logged
        and shows as NaN at that scrape only (an exception is also counted in
        ``flask_appmetrics_internal_errors_total{component="scrape_value"}``); the page
        still answers. Refused under gunicorn or uWSGI (multiprocess mode), where no
        function is read.
        """
        if not self._allowed("set_function", unlabelled=True):
            return
        try:
            value_function(self, function)
        except (TypeError, ValueError) as error:
            self.refuse("set_function", error)
            return
        self._function = function
        for metric in (self, *list(self._twins.values())):
            metric._unlabelled_series().set_function(function)

    def remove(self, *values: object) -> None:
        """Remove the series of these label values (by position, as prometheus_client
        takes them); their places among the kept values are given back. A series that
        does not exist is no error."""
        here = self._here()
        if here is None:
            return
        try:
            label_values = here._label_values_of("remove", values, {})
        except (TypeError, ValueError) as error:
            here.refuse("remove", error)
            return
        here._remove_matching(dict(zip(here.labelnames, label_values, strict=True)))

    def remove_by_labels(self, labels: Mapping[str, str]) -> None:
        """Remove every series whose labels include *labels* (some label names to values)."""
        here = self._here()
        if here is None:
            return
        try:
            if not isinstance(labels, Mapping):
                raise TypeError(f"labels: expected a mapping, got {check.shown(labels)}")
            unknown = [name for name in labels if name not in here.labelnames]
            if unknown or not here.labelnames:
                raise ValueError(
                    f"labels: {here.name} takes {list(here.labelnames)}, "
                    f"got {check.shown([str(name) for name in labels])}"
                )
            wanted = {name: check.label(f"labels.{name}", labels[name]) for name in labels}
        except (TypeError, ValueError) as error:
            here.refuse("remove_by_labels", error)
            return
        here._remove_matching(wanted)

    def _remove_matching(self, wanted: Mapping[str, str]) -> None:
        """Remove the series whose label values include *wanted* (validated), and give
        back the places of values no series has any more."""
        positions: dict[int, str] = {}
        for position, name in enumerate(self.labelnames):
            if name in wanted:
                kept = self._bounds[position].kept(wanted[name])
                if kept is None:
                    return  # a value never kept: no series has it
                positions[position] = kept
        try:
            with self._lock:
                matching = [
                    key
                    for key in self._series
                    if all(key[i] == value for i, value in positions.items())
                ]
                for key in matching:
                    del self._series[key]
                    self._collector.remove(*key)
                for position, value in positions.items():
                    if all(key[position] != value for key in self._series):
                        self._bounds[position].forget(value)
        except Exception:
            self.failed()

    def clear(self) -> None:
        """Remove every series (a metric with labels); their places are given back."""
        here = self._here()
        if here is None or not here.labelnames:
            return
        try:
            with here._lock:
                here._collector.clear()
                for key in here._series:
                    for bound, value in zip(here._bounds, key, strict=True):
                        bound.forget(value)
                here._series.clear()
        except Exception:
            here.failed()

    def __getattr__(self, name: str) -> Any:
        """Anything else of the prometheus_client collector (``collect()``, a counter's
        ``reset()``...), unchecked; for a metric without labels, of its one series."""
        if name.startswith("_"):
            raise AttributeError(name)
        here = self._here()
        if here is None:
            return NoOp()
        return getattr(here._collector, name)

    def record(self, value: float, label_values: tuple[str, ...] = ()) -> None:
        """Apply a validated *value* the way the kind of metric takes one: add it to a
        counter, set a gauge to it, observe it in a histogram (the ``business_event``
        signal, after :meth:`label_values` and :meth:`amount`)."""
        child: Any = self.series(label_values).child if self.labelnames else self._collector
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
        self._count_internal_error("custom_metric")

    def scrape_failed(self) -> None:
        """The function given to ``set_function()`` raised at a scrape: log and count it."""
        logger.exception(
            "flask-appmetrics: the set_function() of %s raised; NaN at this scrape", self.name
        )
        self._count_internal_error("scrape_value")

    def _count_internal_error(self, component: str) -> None:
        state = self._state()
        if state is not None:
            count_internal_error(component, state.count_internal_error)

    def _precreate(self) -> None:
        allowed = dict(self._definition.allowed)
        if self.kind != "counter" or not self.labelnames:
            return
        if not all(label in allowed for label in self.labelnames):
            return
        choices = [sorted(allowed[label]) for label in self.labelnames]
        for combination in itertools.islice(itertools.product(*choices), _MAX_PRECREATED):
            self.series(combination)


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
        multiprocess_mode=multiprocess_mode if kind == "gauge" else None,
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
        custom = CustomMetric(name, definition, documentation, declare(registry, spec), state)
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


__all__ = [
    "DEFAULT_MAX_VALUES",
    "OVERFLOW_VALUE",
    "CustomMetric",
    "Series",
    "declare_metric",
    "declared_metric",
]
