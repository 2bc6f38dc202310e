"""``flask_appmetrics_internal_errors_total`` read per component.

Every series of it has a ``component`` label, so ``get_sample_value(name)`` without labels
is always ``None``: a check written that way can never fail. Read every component instead.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

INTERNAL_ERRORS = "flask_appmetrics_internal_errors_total"


def internal_errors(registry: CollectorRegistry) -> dict[str, float]:
    """``{component: count}`` for every component the registry exports."""
    return {
        sample.labels["component"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == INTERNAL_ERRORS
    }


def assert_no_internal_error(registry: CollectorRegistry) -> None:
    """The counter is there (every component, from the start) and every component is 0."""
    counts = internal_errors(registry)
    assert counts, f"{INTERNAL_ERRORS} is not exported"
    failed = {component: count for component, count in counts.items() if count}
    assert not failed, failed
