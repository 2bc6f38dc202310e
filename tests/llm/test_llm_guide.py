"""The code examples of docs/guide/llm.rst run as written (the local Gemini API stand-in
they use is the example backend's)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "llm.rst"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ``.. code-block:: python`` blocks of a reST page, with their line numbers."""
    blocks = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not re.fullmatch(r"\.\. code-block:: python", line.strip()):
            continue
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            body.append(following)
        blocks.append((index + 1, textwrap.dedent("\n".join(body))))
    return blocks


BLOCKS = python_blocks(GUIDE.read_text())


def test_the_guide_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_guide_examples_run(line: int, code: str) -> None:
    exec(compile(code, f"{GUIDE}:{line}", "exec"), {"__name__": f"guide_{line}"})
