"""The code of the guide pages about testing and configuration runs as it is shown.

A page's Python blocks without a caption run here, each in a fresh namespace (tracebacks
point at the page's lines); the blocks of a recipe, captioned with their file names, are
written to those files and run by pytest in a process of its own, as a user would.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.support.pytest_files import run_pytest
from tests.support.rst import GUIDE, CodeBlock, code_blocks

PAGES = [GUIDE / "testing.rst", GUIDE / "configuration.rst"]
SNIPPETS = [
    block
    for page in PAGES
    for block in code_blocks(page)
    if block.language == "python" and block.caption is None
]


@pytest.mark.parametrize(
    "block", SNIPPETS, ids=[f"{block.page.stem}-line{block.line}" for block in SNIPPETS]
)
def test_python_snippets_run(block: CodeBlock) -> None:
    namespace: dict[str, object] = {"__name__": "guide_example"}
    exec(compile("\n" * (block.line - 1) + block.source, str(block.page), "exec"), namespace)
    namespace.clear()
    gc.collect()


def test_the_pytest_recipe_passes_under_pytest(tmp_path: Path) -> None:
    files = {
        block.caption: block.source
        for block in code_blocks(GUIDE / "testing.rst")
        if block.caption is not None
    }
    assert set(files) == {"myapp.py", "conftest.py", "test_metrics.py"}
    tests = files["test_metrics.py"].count("\ndef test_")
    assert run_pytest(files, tmp_path) == tests
