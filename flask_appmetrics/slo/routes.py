"""Which requests an objective counts: declarations resolved against an app's URL rules.

The request metrics are labelled by ``method`` and ``endpoint`` (the URL rule, e.g.
``/items/<int:item_id>``), so that is what an objective selects, in process and in
Prometheus alike. A view is found under every endpoint it is registered with (through
decorators that keep ``__wrapped__``); when another view shares one of its URL rules
(``@app.get("/items")`` and ``@app.post("/items")``), the objective counts only the
methods of its own view on that rule.

Resolution happens once the app's routes are all registered (views are often declared
after ``init_app``): at the app's first request, and whenever the ``flask appmetrics``
commands or the health report ask before that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..metrics.labels import METHOD_LABELS, OTHER_METHOD
from .objectives import Declaration, Objective, Scope, default_name, threshold_problem

#: Decorators a view may sit under before it is given up on.
_MAX_UNWRAP = 32


@dataclass(frozen=True)
class RouteInfo:
    """One URL rule of the app.

    :param rule: the rule's text, what the ``endpoint`` label holds.
    :param endpoint: the Flask endpoint name (``api.search``).
    :param methods: the HTTP methods it accepts.
    """

    rule: str
    endpoint: str
    methods: frozenset[str]


@dataclass(frozen=True)
class RouteMatch:
    """Requests to one URL rule: every method (``methods`` ``None``) or these labels."""

    endpoint: str
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Selection:
    """The requests an objective counts, by ``(method, endpoint)`` label.

    :param include: the routes it counts; ``None`` for every route but *exclude*.
    :param exclude: URL rules never counted with ``include=None`` (the extension's own).
    """

    include: tuple[RouteMatch, ...] | None
    exclude: tuple[str, ...] = ()

    def matches(self, method: str, endpoint: str) -> bool:
        if self.include is None:
            return endpoint not in self.exclude
        return any(
            m.endpoint == endpoint and (m.methods is None or method in m.methods)
            for m in self.include
        )

    def describe(self) -> str:
        if self.include is None:
            return "every route" + (f" but {', '.join(self.exclude)}" if self.exclude else "")
        return ", ".join(
            m.endpoint if m.methods is None else f"{m.endpoint} ({'|'.join(m.methods)})"
            for m in self.include
        )


@dataclass(frozen=True)
class ResolvedObjective:
    """An objective with its name settled and the requests it counts."""

    objective: Objective
    selection: Selection
    #: Where it was declared (for messages).
    source: str
    #: What was declared as its scope (for messages).
    scope: Scope


@dataclass(frozen=True)
class Resolution:
    """The objectives of one app, resolved against its routes.

    :param objectives: the usable ones, in declaration order.
    :param problems: declarations that cannot be used, one line each (a latency threshold
        off the buckets, an app's configured scope that matches no route, a name taken).
    :param notes: declarations of the extension that count no route of this app.
    """

    objectives: tuple[ResolvedObjective, ...]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def routes_of(rules: Iterable[Any]) -> tuple[RouteInfo, ...]:
    """:class:`RouteInfo` of werkzeug rules (``app.url_map.iter_rules()``)."""
    return tuple(
        RouteInfo(rule.rule, rule.endpoint, frozenset(rule.methods or ())) for rule in rules
    )


def _is_view(func: object, view: object) -> bool:
    for _ in range(_MAX_UNWRAP):
        if func is view:
            return True
        func = getattr(func, "__wrapped__", None)
        if func is None:
            return False
    return False


def _in_blueprint(endpoint: str, blueprint: str) -> bool:
    """Whether *endpoint* is a view of *blueprint* or of a blueprint nested in it: its
    dotted blueprint path holds the blueprint's name (``parent.child.view`` is in
    ``parent``, in ``child`` and in ``parent.child``)."""
    path = endpoint.split(".")[:-1]
    wanted = blueprint.split(".")
    return any(path[i : i + len(wanted)] == wanted for i in range(len(path) - len(wanted) + 1))


def _endpoints_of(
    scope: Scope, app_routes: Sequence[RouteInfo], view_functions: Mapping[str, Any]
) -> set[str] | None:
    """The Flask endpoints *scope* covers among *app_routes*; ``None`` for the whole app."""
    known = {route.endpoint for route in app_routes}
    if scope.kind == "app":
        return None
    if scope.kind == "blueprint" and scope.blueprint is not None:
        return {e for e in known if _in_blueprint(e, scope.blueprint)}
    if scope.kind == "endpoints":
        return set(scope.endpoints) & known
    return {e for e in known if _is_view(view_functions.get(e), scope.view)}


def _selection(
    endpoints: set[str], app_routes: Sequence[RouteInfo], owners: Mapping[str, set[str]]
) -> Selection:
    methods: dict[str, set[str]] = {}
    for route in app_routes:
        if route.endpoint in endpoints:
            methods.setdefault(route.rule, set()).update(route.methods)
    matches = []
    for rule, accepted in sorted(methods.items()):
        if owners[rule] <= endpoints:
            matches.append(RouteMatch(rule))
            continue
        # Another view serves other methods on this rule: count this view's only. OPTIONS
        # is answered by Flask for every view of the rule, so it belongs to none of them.
        labels = {METHOD_LABELS.get(m, OTHER_METHOD) for m in accepted - {"OPTIONS"}}
        matches.append(RouteMatch(rule, tuple(sorted(labels or {"OPTIONS"}))))
    return Selection(tuple(matches))


def resolve(
    declarations: Iterable[Declaration],
    routes: Sequence[RouteInfo],
    view_functions: Mapping[str, Any],
    *,
    own_blueprints: frozenset[str],
    buckets: Sequence[float],
) -> Resolution:
    """Resolve *declarations* against an app's *routes*.

    :param view_functions: the app's view functions by endpoint (``app.view_functions``).
    :param own_blueprints: the extension's blueprints: their routes are never counted.
    :param buckets: the boundaries of ``http_request_duration_seconds``.
    """
    app_routes = [r for r in routes if r.endpoint.partition(".")[0] not in own_blueprints]
    own_rules = tuple(sorted({r.rule for r in routes} - {r.rule for r in app_routes}))
    owners: dict[str, set[str]] = {}
    for route in app_routes:
        owners.setdefault(route.rule, set()).add(route.endpoint)
    resolved: list[ResolvedObjective] = []
    problems: list[str] = []
    notes: list[str] = []
    taken: dict[tuple[str, str], str] = {}
    for declaration in declarations:
        where = declaration.source
        problem = threshold_problem(declaration, buckets)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        scope = declaration.scope
        endpoints = _endpoints_of(scope, app_routes, view_functions)
        if scope.kind == "endpoints" and endpoints is not None:
            missing = sorted(set(scope.endpoints) - endpoints)
            if missing and declaration.per_app:
                problems.append(f"{where}: no view of the app has the endpoint {missing[0]!r}")
                continue
        if endpoints is not None and not endpoints:
            line = f"{where}: {scope.describe()} serves no route of this app"
            (problems if declaration.per_app else notes).append(line)
            continue
        name = declaration.name or default_name(scope, sorted(endpoints or ()))
        selection = (
            Selection(None, own_rules)
            if endpoints is None
            else _selection(endpoints, app_routes, owners)
        )
        for objective in declaration.objectives(name):
            first = taken.get(objective.key)
            if first is not None:
                problems.append(
                    f"{where}: the {objective.sli} objective {name!r} is already declared by "
                    f"{first}; give one of them another name (name=...)"
                )
                continue
            taken[objective.key] = where
            resolved.append(ResolvedObjective(objective, selection, where, scope))
    return Resolution(tuple(resolved), tuple(problems), tuple(notes))


#: Gives an app's current routes and view functions (read at resolution time).
RouteSource = Callable[[], tuple[Sequence[RouteInfo], Mapping[str, Any]]]
