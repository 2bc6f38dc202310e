"""The HTTP surface: ``/metrics``, the health endpoints, the status page, who may see them, and
the check that our paths do not collide with the app's."""
