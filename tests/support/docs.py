"""The code blocks of the documentation pages under ``docs/``, for the tests that run them.

In reST pages a block is a ``.. code-block:: <language>`` directive (its ``:caption:``
option kept); in Markdown pages a fenced block. What runs: ``python`` blocks (in-process,
or under pytest for the files of a pytest recipe), ``bash`` blocks (for real, in
``system/test_readme_shell.py``); ``json`` blocks are parsed. Other languages (``text``,
``console``, ``ini``, ``yaml``) are shown only, for commands that would install packages
or need a machine of their own.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block::[ \t]*(?P<language>\S+)[ \t]*$")
_OPTION = re.compile(r"^[ \t]+:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, its ``:caption:`` and its source."""

    path: Path
    #: Line number (from 1) of the block's first source line in its page.
    line: int
    language: str
    source: str
    caption: str | None = None

    @property
    def page(self) -> str:
        """The page's path under ``docs/`` (``guide/health.rst``)."""
        return self.path.relative_to(DOCS).as_posix()

    @property
    def id(self) -> str:
        """A test id naming the page and line (``guide/health.rst:42``)."""
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every source page of the documentation, built output left out."""
    found = [*DOCS.rglob("*.rst"), *DOCS.rglob("*.md")]
    return sorted(p for p in found if "_build" not in p.relative_to(DOCS).parts)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rst_blocks(path: Path) -> list[Block]:
    """The ``.. code-block::`` directives of the reST page *path*."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index])
        index += 1
        if match is None:
            continue
        outer = len(match.group("indent"))
        caption = None
        while index < len(lines) and (option := _OPTION.match(lines[index])):
            if _indent(lines[index]) <= outer:
                break
            if option.group("name") == "caption":
                caption = option.group("value").strip()
            index += 1
        while index < len(lines) and not lines[index].strip():
            index += 1
        first = index
        while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > outer):
            index += 1
        body = textwrap.dedent("\n".join(lines[first:index])).strip("\n") + "\n"
        found.append(Block(path, first + 1, match.group("language"), body, caption))
    return found


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced blocks of the Markdown page *path*."""
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, match.start(2)) + 1, match.group(1), match.group(2))
        for match in _FENCE.finditer(text)
    ]


def blocks(language: str) -> list[Block]:
    """Every block in *language*, page by page, in page order."""
    found: list[Block] = []
    for path in pages():
        page_blocks = markdown_blocks(path) if path.suffix == ".md" else rst_blocks(path)
        found += [block for block in page_blocks if block.language == language]
    return found


def is_pytest_file(block: Block) -> bool:
    """A block shown as a file of a pytest suite (``:caption: conftest.py``,
    ``:caption: test_app.py``): run by pytest with the page's other files, not alone."""
    return block.caption is not None and (
        block.caption == "conftest.py"
        or (block.caption.startswith("test_") and block.caption.endswith(".py"))
    )
