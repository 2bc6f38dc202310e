"""The code blocks of the reST guide pages (``docs/guide/*.rst``), for the tests that run
them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\w+)\s*$")
_OPTION = re.compile(r"^\s+:(\w+):\s*(.*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One ``.. code-block::`` of a page."""

    page: Path
    #: Line of the first line of code, counted from 1.
    line: int
    language: str
    #: The ``:caption:`` option (a file name, for the files of a recipe), if any.
    caption: str | None
    source: str


def code_blocks(page: Path) -> list[CodeBlock]:
    """Every code block of *page*, in order, its indentation removed."""
    lines = page.read_text().splitlines()
    found: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        directive = _DIRECTIVE.match(lines[index])
        index += 1
        if directive is None:
            continue
        indent = len(directive.group(1))
        caption = None
        while index < len(lines) and (option := _OPTION.match(lines[index])):
            if option.group(1) == "caption":
                caption = option.group(2).strip()
            index += 1
        body: list[str] = []
        start = index + 1
        while index < len(lines):
            text = lines[index]
            if text.strip() and len(text) - len(text.lstrip()) <= indent:
                break
            body.append(text)
            index += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
            start += 1
        margin = min(len(t) - len(t.lstrip()) for t in body if t.strip())
        source = "\n".join(t[margin:] for t in body) + "\n"
        found.append(CodeBlock(page, start, directive.group(2), caption, source))
    return found
