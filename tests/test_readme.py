"""The README's examples run, and its tables say what the code does.

Python blocks run here, each in a fresh namespace (tracebacks point at README lines); a
block that is a pytest test module (it defines ``test_*`` functions) runs under pytest, in a
pytest process of its own, as a user would paste it. The JSON block is checked against a
real health response; shell blocks run in ``system/test_readme_shell.py``.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.config import DEFAULTS
from flask_appmetrics.metrics.catalog import CATALOG
from tests.support.pytest_files import run_pytest
from tests.support.readme import README, blocks


def _is_test_module(source: str) -> bool:
    return re.search(r"^def test_", source, re.MULTILINE) is not None


PYTHON_BLOCKS = [(n, source) for n, source in blocks("python") if not _is_test_module(source)]
TEST_MODULES = [(n, source) for n, source in blocks("python") if _is_test_module(source)]


def test_readme_opens_with_the_two_commands() -> None:
    first = blocks("bash")[0][1].splitlines()
    assert first[0].startswith("./scripts/demo.sh")
    assert first[1].startswith("./scripts/test.sh")
    text = README.read_text()
    assert text.index("./scripts/demo.sh") < text.index("## ")


@pytest.mark.parametrize(
    ("line", "source"), PYTHON_BLOCKS, ids=[f"line{n}" for n, _ in PYTHON_BLOCKS]
)
def test_python_examples_run(line: int, source: str) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    # Pad so that a failure's traceback names the README line.
    exec(compile("\n" * (line - 1) + source, str(README), "exec"), namespace)
    # What the example made (an app, a monitored circuit breaker) goes with it, as it would
    # with the process of a script: nothing of it may reach the next test's apps.
    namespace.clear()
    gc.collect()


@pytest.mark.parametrize(
    ("line", "source"), TEST_MODULES, ids=[f"line{n}" for n, _ in TEST_MODULES]
)
def test_pytest_examples_pass_under_pytest(line: int, source: str, tmp_path: Path) -> None:
    # Named as its first line says ("# test_ping.py"), as the user would save it.
    first = source.splitlines()[0].removeprefix("# ").strip()
    name = first if re.fullmatch(r"test_\w+\.py", first) else f"test_readme_line{line}.py"
    assert run_pytest({name: source}, tmp_path) >= 1


def test_the_health_json_example_has_the_real_keys_in_order() -> None:
    ((_, example),) = blocks("json")
    app = Flask("readme_health")
    FlaskMetrics(app, registry=CollectorRegistry())
    real = app.test_client().get("/api/health").get_json()
    assert list(json.loads(example)) == list(real)


def test_configuration_table_lists_every_key() -> None:
    text = README.read_text()
    for key in DEFAULTS:
        assert f"| `{key}` |" in text, f"README configuration table lacks {key}"


def test_metric_catalog_lists_every_family() -> None:
    section = README.read_text().split("## Metric catalog", 1)[1].split("\n## ", 1)[0]
    for spec in CATALOG:
        assert f"`{spec.name}`" in section, f"README metric catalog lacks {spec.name}"
