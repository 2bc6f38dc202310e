"""The README's examples run, and its configuration table lists every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flask_appmetrics.config import DEFAULTS

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


PYTHON_BLOCKS = blocks("python")


def test_readme_opens_with_the_two_commands() -> None:
    first = blocks("bash")[0].splitlines()
    assert first[0].startswith("./scripts/demo.sh")
    assert first[1].startswith("./scripts/test.sh")
    text = README.read_text()
    assert text.index("./scripts/demo.sh") < text.index("## ")


@pytest.mark.parametrize("source", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run(source: str) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(source, str(README), "exec"), namespace)


def test_configuration_table_lists_every_key() -> None:
    text = README.read_text()
    for key in DEFAULTS:
        assert f"| `{key}` |" in text, f"README configuration table lacks {key}"
