"""The custom-metric methods of :class:`~flask_appmetrics.FlaskMetrics`: ``counter()``,
``gauge()``, ``histogram()`` (the metrics themselves: :mod:`flask_appmetrics.metrics.custom`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from .custom import DEFAULT_MAX_VALUES, CustomMetric, declare_metric
from .registration import Kind
from .registry_state import RegistryBound


class CustomMetricsMixin(RegistryBound):
    """The custom-metric methods of :class:`~flask_appmetrics.FlaskMetrics`.

    Metrics are declared in the extension's registry and, while apps given registries of
    their own use them, in those too; a call records into the registry of the app
    recording (the one in context, else the most recently initialised).
    """

    #: The metrics declared through this extension, by name (in its own registry).
    _declared: dict[str, CustomMetric]

    def _declare(
        self,
        kind: Kind,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        **options: Any,
    ) -> CustomMetric:
        metric = declare_metric(self.registry, kind, name, documentation, labelnames, **options)
        self._declared[name] = metric
        if self._app_registry_list():
            self._follow_apps(metric)
        return metric

    def _follow_apps(self, metric: CustomMetric) -> None:
        """Declare *metric* in each registry of this extension's apps, and have its calls
        record where the app recording is.

        :raises MetricConflictError: a registry has an incompatible metric of the name.
        """
        for registry in self._app_registry_list():
            metric.twin(registry)
        metric.follow(self._registry_now)

    def _declare_in(self, registry: CollectorRegistry) -> None:
        """Declare every metric declared so far in *registry*, a new app's own.

        :raises MetricConflictError: *registry* has an incompatible metric of a name.
        """
        for metric in list(self._declared.values()):
            metric.twin(registry)
            metric.follow(self._registry_now)

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
        return self._declare(
            "counter", name, documentation, labelnames, allowed=allowed, max_values=max_values
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
        return self._declare(
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
        return self._declare(
            "histogram",
            name,
            documentation,
            labelnames,
            allowed=allowed,
            max_values=max_values,
            buckets=buckets,
        )


__all__ = ["CustomMetricsMixin"]
