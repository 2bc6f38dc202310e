"""The package's import layers: every module has a floor, and no import runs back up.

Floors, lowest first (names relative to ``flask_appmetrics``; the first pattern that
matches a module gives its floor, so the specific ones come before ``metrics.*``):

    0  errors, _version, signals
    1  llm.*, health.windows, health.checks, health.draining, metrics.labels,
       metrics.registration, recording.validation (pure checks of app input),
       config_strings (values as the environment gives them), slo.objectives, slo.windows,
       slo.burn (service level objectives, their windows and burn rates)
    2  settings, config, integrations.genai.tokens/errors/responses (what google-genai's
       objects say: token counts, failures, finish reasons), slo.* (objectives resolved
       against routes, the per-app tracker, generated rules)
    3  metrics.* (the rest, multiprocess included), health.monitor, integrations.sentry
    4  recording.*, integrations.redis.*
    5  web.*, health_wiring (the monitor wired to Flask, metrics and user identity),
       slo_wiring (the objectives' tracker wired to the app's routes)
    6  app_state
    7  helpers (the module-level recording API), cli.* (the ``flask appmetrics`` commands)
    8  extension, gunicorn, integrations.caching, integrations.pybreaker, integrations.genai
       (the instrumented client, and the package that re-exports it)
    9  __init__ (the re-exports)

A subpackage's ``__init__`` holds a docstring only (``integrations.genai``'s also re-exports
its client, on that client's floor), so its floor (the one most of its modules share) does
not constrain them: ``recording.validation`` and
the readers of ``integrations.genai`` sit below their package's floor.

The rule: a module may import a module on a strictly lower floor, or a module on its own
floor in the same folder (``metrics/`` and ``metrics/multiprocess/`` are one folder, the
modules at the top of the package are another), and the whole import graph has no cycle.
Every import counts: at the top of a module, inside a function, and under
``if TYPE_CHECKING:`` (a type-only import still says "this module knows that one"), read
from the source with :mod:`ast`. Package modules are imported at the top of a module only:
an import inside a function is how a cycle hides, so it is reported too. Optional
third-party imports (sentry_sdk, redis, google.genai) are not the package's and may stay
lazy.

Each test reports every offending edge at once (``importer -> imported (file:line, kind)``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import pytest

import flask_appmetrics

PACKAGE = Path(flask_appmetrics.__file__).resolve().parent
ROOT = "flask_appmetrics"

FLOORS: list[tuple[int, str]] = [
    (0, "errors"),
    (0, "_version"),
    (0, "signals"),
    (1, "llm"),
    (1, "llm.*"),
    (1, "health"),
    (1, "health.windows"),
    (1, "health.checks"),
    (1, "health.draining"),
    (1, "metrics"),
    (1, "metrics.labels"),
    (1, "metrics.registration"),
    (1, "config_strings"),
    (1, "slo"),
    (1, "slo.objectives"),
    (1, "slo.windows"),
    (1, "slo.burn"),
    (2, "slo.*"),
    (2, "settings"),
    (2, "config"),
    (3, "metrics.*"),
    (3, "health.monitor"),
    (1, "recording.validation"),
    (2, "integrations.genai.tokens"),
    (2, "integrations.genai.errors"),
    (2, "integrations.genai.responses"),
    (3, "integrations.sentry"),
    (4, "recording"),
    (4, "recording.*"),
    (4, "integrations"),
    (4, "integrations.redis"),
    (4, "integrations.redis.*"),
    (5, "web"),
    (5, "web.*"),
    (5, "health_wiring"),
    (5, "slo_wiring"),
    (6, "app_state"),
    (7, "helpers"),
    (7, "cli"),
    (7, "cli.*"),
    (8, "extension"),
    (8, "gunicorn"),
    (8, "integrations.*"),
    (9, "__init__"),
]


def _relative(module: str) -> str:
    """``flask_appmetrics.web.guard`` -> ``web.guard``; the package itself -> ``__init__``."""
    return module.removeprefix(ROOT).removeprefix(".") or "__init__"


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    package = PACKAGE.joinpath(*parts, "__init__.py")
    return package if package.exists() else PACKAGE.joinpath(*parts).with_suffix(".py")


def _is_package(module: str) -> bool:
    return _path(module).name == "__init__.py"


@cache
def modules() -> tuple[str, ...]:
    """Every module of the package, found on disk (packages by their ``__init__``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join((ROOT, *parts)))
    return tuple(found)


def floor_of(module: str) -> int | None:
    name = _relative(module)
    return next((floor for floor, pattern in FLOORS if fnmatchcase(name, pattern)), None)


def folder_of(module: str) -> str:
    """The top folder a module lives in (``""`` for the modules beside ``extension.py``)."""
    name = _relative(module)
    if name == "__init__":
        return ""
    top, _, rest = name.partition(".")
    return top if rest or _is_package(module) else ""


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    kind: str  # "runtime", "function-level" or "type-only"

    def __str__(self) -> str:
        where = f"{_path(self.importer).relative_to(PACKAGE.parent)}:{self.line}"
        return f"{_relative(self.importer)} -> {_relative(self.imported)} ({where}, {self.kind})"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in *tree*, with where it sits."""

    def visit(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, "type-only" if kind == "type-only" else "function-level")
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), "type-only")
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                yield from visit(child, kind)

    yield from visit(tree, "runtime")


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules one import statement reaches (``from . import x``: the module x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    if not (source == ROOT or source.startswith(f"{ROOT}.")):
        return []
    reached = []
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        reached.append(candidate if candidate in modules() else source)
    return reached


@cache
def edges() -> tuple[Edge, ...]:
    """Every import of a package module by a package module."""
    found: set[Edge] = set()
    for module in modules():
        tree = ast.parse(_path(module).read_text(), filename=str(_path(module)))
        for node, kind in _imports(tree):
            for target in _targets(module, node):
                if target.startswith(ROOT) and target != module:
                    found.add(Edge(module, target, node.lineno, kind))
    return tuple(sorted(found, key=lambda e: (e.importer, e.line, e.imported)))


def _report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n  " + "\n  ".join(problems)


def test_every_module_has_a_floor_and_every_floor_a_module() -> None:
    unplaced = [m for m in modules() if floor_of(m) is None]
    stale = [
        pattern
        for _, pattern in FLOORS
        if not any(fnmatchcase(_relative(m), pattern) for m in modules())
    ]
    assert not unplaced, _report("modules without a floor", unplaced)
    assert not stale, _report("floor patterns matching no module", stale)


def test_every_import_goes_down_a_floor_or_stays_in_its_folder() -> None:
    problems = []
    for edge in edges():
        low, high = floor_of(edge.imported), floor_of(edge.importer)
        if low is None or high is None:
            continue  # reported by the test above
        same_folder = folder_of(edge.importer) == folder_of(edge.imported)
        if low > high or (low == high and not same_folder):
            problems.append(f"{edge}: floor {high} imports floor {low}")
    assert not problems, _report("imports against the floors", problems)


def test_package_modules_are_imported_at_the_top_of_a_module() -> None:
    lazy = [str(edge) for edge in edges() if edge.kind == "function-level"]
    assert not lazy, _report("imports of package modules inside functions", lazy)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycles_runtime_or_type_only() -> None:
    graph: dict[str, set[str]] = {}
    for edge in edges():
        graph.setdefault(edge.importer, set()).add(edge.imported)
    problems = []
    for component in _cycles(graph):
        members = set(component)
        inside = [str(e) for e in edges() if e.importer in members and e.imported in members]
        names = ", ".join(_relative(m) for m in component)
        problems.append(f"cycle through {names}:\n    " + "\n    ".join(inside))
    assert not problems, _report("import cycles", problems)


def test_the_checker_sees_every_kind_of_import() -> None:
    # The edges the rules above depend on seeing: one at the top of a module, one under
    # TYPE_CHECKING, ``from . import signals`` as the module signals, and a subpackage's
    # module reached through ``from ..x import y``.
    kinds = {(_relative(e.importer), _relative(e.imported)): e.kind for e in edges()}
    assert kinds[("extension", "app_state")] == "runtime"
    assert kinds[("helpers", "signals")] == "runtime"
    assert kinds[("metrics.catalog", "metrics.registration")] == "runtime"
    assert "type-only" in set(kinds.values())
    assert set(kinds.values()) <= {"runtime", "function-level", "type-only"}
    assert ("helpers", "__init__") not in kinds


def runs(module: str) -> set[str]:
    """Every package module that importing *module* (or calling into it) runs, transitively:
    the imports that execute, type-only ones left out."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for edge in edges():
            if edge.kind == "type-only":
                continue
            if edge.importer == current and edge.imported not in seen:
                seen.add(edge.imported)
                todo.append(edge.imported)
    return seen


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
    # They send signals; what records them (the receivers, the request hooks, the
    # extension that installs both) stays out of their imports.
    top = {
        "flask_appmetrics.recording.receivers",
        "flask_appmetrics.recording.request_hooks",
        "flask_appmetrics.extension",
    }
    assert not runs(module) & top, sorted(runs(module) & top)


def test_the_genai_integration_re_exports_token_usage() -> None:
    from flask_appmetrics.integrations import genai
    from flask_appmetrics.llm.tokens import TokenUsage

    assert genai.TokenUsage is TokenUsage
