"""Prometheus side: the metric catalog, registration and adoption, bounded labels, custom
metrics, the per-registry state and multiprocess mode. prometheus_client only, no Flask."""
