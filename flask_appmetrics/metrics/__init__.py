"""Prometheus side: the metric catalog (``catalog``), registration and adoption
(``registration``), bounded labels (``labels``), custom metrics (``custom``), cache layers
(``cache_layers``), the gauges computed at scrape time (``scrape_time``), the one state
object per registry (``registry_state``) and multiprocess mode (``multiprocess``). Built on
prometheus_client; only ``custom`` looks at Flask, for the strict mode of the app in context."""
