"""The documentation's examples run, and its references cover what the code has.

Every ``.. code-block:: python`` of a page under ``docs/`` runs here in a fresh namespace
(tracebacks point at the page's lines), except the files of a pytest recipe (a
``:caption:`` of ``conftest.py`` or ``test_*.py``): those of one page are written to a
directory together and run by pytest. ``json`` blocks parse, and the health example has
the real keys in order. Shell blocks run in ``system/test_readme_shell.py``; the site is
built, warnings as errors, in ``system/test_docs_build.py``.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

import flask_appmetrics
from flask_appmetrics import FlaskMetrics
from flask_appmetrics.config import DEFAULTS, DESCRIPTIONS
from tests.support.docs import DOCS, Block, blocks, is_pytest_file

PYTHON_BLOCKS = [block for block in blocks("python") if not is_pytest_file(block)]
PYTEST_PAGES = sorted({block.page for block in blocks("python") if is_pytest_file(block)})


def test_every_configuration_key_has_a_description() -> None:
    # The configuration reference is generated from both tables.
    assert set(DESCRIPTIONS) == set(DEFAULTS), (
        "DESCRIPTIONS in flask_appmetrics/config.py must describe every key of DEFAULTS; "
        f"missing: {sorted(set(DEFAULTS) - set(DESCRIPTIONS))}, "
        f"unknown: {sorted(set(DESCRIPTIONS) - set(DEFAULTS))}"
    )


@pytest.mark.parametrize("key", list(DESCRIPTIONS))
def test_descriptions_are_one_sentence(key: str) -> None:
    text = DESCRIPTIONS[key]
    assert text[0].isupper() or text[0] == "`", text
    assert text.endswith("."), text
    # One sentence: no full stop followed by a new sentence (decimals like 0.5 are fine).
    assert not re.search(r"\. [A-Z]", text[:-1]), text
    assert text.count("`") % 2 == 0, f"{key}: unbalanced backticks"


def test_python_examples_exist() -> None:
    # A parser that found nothing would let every page's examples rot unseen.
    pages = {block.page for block in PYTHON_BLOCKS}
    assert {"quickstart.rst", "guide/health.rst", "guide/http.rst"} <= pages


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.id for block in PYTHON_BLOCKS])
def test_python_examples_run(block: Block) -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    # Padded so that a failure's traceback names the page's line.
    exec(compile("\n" * (block.line - 1) + block.source, str(block.path), "exec"), namespace)
    # What the example made (an app, a monitored circuit breaker) goes with it, as it would
    # with the process of a script: nothing of it may reach the next test's apps.
    namespace.clear()
    gc.collect()


@pytest.mark.parametrize("page", PYTEST_PAGES)
def test_pytest_recipes_pass(page: str, tmp_path: Path) -> None:
    files = [
        block for block in blocks("python") if block.page == page and block.caption is not None
    ]
    tests = 0
    for block in files:
        assert block.caption is not None
        (tmp_path / block.caption).write_text(block.source)
        tests += len(re.findall(r"^def test_", block.source, re.MULTILINE))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.fullmatch(r"(\d+) passed in [\d.]+s", summary)
    # Every test function ran (parametrized ones more than once), none skipped.
    assert passed is not None, result.stdout
    assert int(passed.group(1)) >= tests, result.stdout


def test_json_examples_parse() -> None:
    for block in blocks("json"):
        try:
            json.loads(block.source)
        except ValueError as error:
            pytest.fail(f"{block.id}: {error}")


def test_the_health_json_example_has_the_real_keys_in_order() -> None:
    (example,) = [block for block in blocks("json") if block.page == "guide/health.rst"]
    app = Flask("docs_health")
    FlaskMetrics(app, registry=CollectorRegistry())
    real = app.test_client().get("/api/health").get_json()
    assert list(json.loads(example.source)) == list(real)


def test_the_api_reference_documents_every_public_name() -> None:
    text = (DOCS / "api.rst").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: (\w+)", text, re.MULTILINE))
    public = set(flask_appmetrics.__all__) - {"__version__"}
    assert public <= documented, f"docs/api.rst lacks {sorted(public - documented)}"
