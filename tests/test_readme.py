"""The README's examples run.

Python blocks run here, each in a fresh namespace (tracebacks point at README lines); shell
blocks run in ``system/test_readme_shell.py``. The references the README used to carry (the
configuration keys, the metric catalog) are generated from the code in the documentation
(``test_docs.py`` and ``system/test_docs_build.py``).
"""

from __future__ import annotations

import gc
import re

import pytest

from tests.support.readme import README, blocks

PYTHON_BLOCKS = blocks("python")


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


def test_links_lead_to_pages_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README.read_text())
    local = [target for target in links if "://" not in target]
    assert local, "the README links to the documentation pages"
    for target in local:
        assert (README.parent / target).exists(), f"README links to a missing {target}"
