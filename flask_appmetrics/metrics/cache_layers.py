"""Cache layers: a cache's size and item count, reported per layer at scrape time.

``cache_size_bytes{layer}`` and ``cache_items_count{layer}`` are served by the registry's
scrape-time gauges (:mod:`flask_appmetrics.metrics.scrape_time`) from callables registered
here, before or after the registry's first ``init_app``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from .registry_state import RegistryBound, registry_state
from .scrape_time import ValueFunction


def register_cache_layer(
    registry: CollectorRegistry,
    layer: str,
    *,
    size_bytes: ValueFunction | None = None,
    items: ValueFunction | None = None,
) -> None:
    """Register a cache layer's scrape-time size callables for *registry* (now, or when
    its first app is initialised).

    :raises TypeError: *layer* is not a non-empty string or a callable is not callable.
    """
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"layer: expected a non-empty string, got {layer!r}")
    for field, function in (("size_bytes", size_bytes), ("items", items)):
        if function is not None and not callable(function):
            raise TypeError(f"{field}: expected a callable, got {function!r}")
    registry_state(registry).register_layer(layer, size_bytes, items)


class CacheLayersMixin(RegistryBound):
    """The cache-layer method of :class:`~flask_appmetrics.FlaskMetrics`."""

    #: The layers registered through this extension, for registries its apps get later.
    _cache_layers: dict[str, tuple[ValueFunction | None, ValueFunction | None]]

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
        again replaces its callables. The layer shows in the registry of every app of this
        extension, those given a registry of their own included.
        """
        register_cache_layer(self.registry, layer, size_bytes=size_bytes, items=items)
        self._cache_layers[layer] = (size_bytes, items)
        for registry in self._app_registry_list():
            register_cache_layer(registry, layer, size_bytes=size_bytes, items=items)

    def _layers_in(self, registry: CollectorRegistry) -> None:
        """Register every layer registered so far in *registry*, a new app's own."""
        for layer, (size_bytes, items) in list(self._cache_layers.items()):
            register_cache_layer(registry, layer, size_bytes=size_bytes, items=items)
