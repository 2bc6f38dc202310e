"""``flask_appmetrics_internal_errors_total`` exists at 0 for every component from the start,
so that ``increase()`` (and the shipped alert) sees the first failure."""

from __future__ import annotations

import ast
from pathlib import Path

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.metrics.catalog import INTERNAL_ERROR_COMPONENTS

PACKAGE = Path(__file__).resolve().parent.parent / "flask_appmetrics"
INTERNAL = "flask_appmetrics_internal_errors_total"

#: Callables that count an internal error, and which positional argument is the component.
_REPORTERS = {
    "count_internal_error": 0,
    "_internal_error": 0,
    "_on_internal_error": 0,
    "on_internal_error": 0,
    "_on_error": 0,
    "on_error": 0,
    "failed": 0,
    "_report": 1,
    # SignalReceivers._receiver(signal_name_for_logs, component, ...)
    "_receiver": 1,
}


def components_used_in_the_package() -> dict[str, str]:
    """Every literal component name passed to an internal-error reporter, with where."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in _REPORTERS:
                continue
            index = _REPORTERS[name]
            if len(node.args) > index:
                arg = node.args[index]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found[arg.value] = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
    return found


def test_the_scan_finds_the_reporters() -> None:
    used = components_used_in_the_package()
    # One from each kind of reporter, so the scan itself cannot silently find nothing.
    assert {"finish", "redis", "health", "readyz", "signal_receiver", "scrape_value"} <= set(used)


def test_every_component_the_package_reports_is_known() -> None:
    unknown = {c: where for c, where in components_used_in_the_package().items()
               if c not in INTERNAL_ERROR_COMPONENTS}  # fmt: skip
    assert not unknown, f"add these to catalog.INTERNAL_ERROR_COMPONENTS: {unknown}"


def test_every_known_component_is_exported_at_zero_before_any_failure() -> None:
    registry = CollectorRegistry()
    FlaskMetrics(Flask("fresh"), registry=registry)
    for component in INTERNAL_ERROR_COMPONENTS:
        assert registry.get_sample_value(INTERNAL, {"component": component}) == 0.0, component
    components = {
        sample.labels["component"]
        for family in registry.collect()
        if family.name == INTERNAL.removesuffix("_total")
        for sample in family.samples
        if sample.name == INTERNAL
    }
    assert components == set(INTERNAL_ERROR_COMPONENTS)


def test_a_first_failure_counts_one_from_zero() -> None:
    registry = CollectorRegistry()

    def broken_identity() -> str:
        raise RuntimeError("identity backend down")

    app = Flask("first_failure")
    FlaskMetrics(app, registry=registry, user_identity=broken_identity)

    @app.get("/")
    def index() -> str:
        return "ok"

    labels = {"component": "user_identity"}
    assert registry.get_sample_value(INTERNAL, labels) == 0.0
    response = app.test_client().get("/")
    response.close()
    assert response.status_code == 200
    assert registry.get_sample_value(INTERNAL, labels) == 1.0
