"""The package's import layers (DESIGN.md, "Layout"): no import runs back up.

Read from the source with :mod:`ast`, so a lazy import inside a function (config's
``sentry_sdk``) and imports only for type checking do not count: what counts is what
importing a module runs.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import flask_appmetrics

PACKAGE = Path(flask_appmetrics.__file__).resolve().parent


def _module_path(module: str) -> Path:
    parts = module.split(".")[1:]
    as_package = PACKAGE.joinpath(*parts, "__init__.py")
    return as_package if as_package.exists() else PACKAGE.joinpath(*parts).with_suffix(".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return found


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The package modules that importing *module* imports directly."""
    path = _module_path(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _top_level_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else None
            target = target or node.module or ""
            # ``from . import signals`` imports a module; ``from .x import name`` imports x.
            names = [target]
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _module_path(candidate).exists():
                    names.append(candidate)
        for name in names:
            if name == "flask_appmetrics" or name.startswith("flask_appmetrics."):
                out.add(name)
                # Importing a.b.c runs the __init__ of every package on the way.
                parent = name.rpartition(".")[0]
                while parent.startswith("flask_appmetrics"):
                    out.add(parent)
                    parent = parent.rpartition(".")[0]
    out.discard(module)
    return frozenset(out)


def closure(module: str) -> set[str]:
    """Every package module that importing *module* imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in direct_imports(todo.pop()) - seen - {"flask_appmetrics"}:
            seen.add(name)
            todo.append(name)
    return seen


@pytest.mark.parametrize(
    "module",
    ["flask_appmetrics.llm.pricing", "flask_appmetrics.llm.tokens", "flask_appmetrics.config"],
)
def test_the_config_and_price_table_import_no_integration(module: str) -> None:
    reached = closure(module)
    assert not {m for m in reached if m.startswith("flask_appmetrics.integrations")}, reached


@pytest.mark.parametrize(
    "module",
    [
        "flask_appmetrics.recording.send",
        "flask_appmetrics.helpers",
        "flask_appmetrics.integrations.caching",
        "flask_appmetrics.integrations.pybreaker",
        "flask_appmetrics.integrations.genai",
    ],
)
def test_helpers_and_integrations_do_not_reach_the_receivers(module: str) -> None:
    top = {
        "flask_appmetrics.recording.receivers",
        "flask_appmetrics.recording.request_hooks",
        "flask_appmetrics.extension",
    }
    assert not closure(module) & top, sorted(closure(module) & top)


def test_the_genai_integration_re_exports_token_usage() -> None:
    from flask_appmetrics.integrations import genai
    from flask_appmetrics.llm.tokens import TokenUsage

    assert genai.TokenUsage is TokenUsage
