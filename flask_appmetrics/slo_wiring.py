"""An app's :class:`~flask_appmetrics.slo.tracker.SloTracker`, wired to Flask.

:mod:`flask_appmetrics.slo` is pure Python: it reads routes as plain values. This module
gives the tracker ``init_app`` builds the app's URL rules and view functions (read when the
objectives are resolved, the app held weakly), the declarations that apply to it (the
extension's, then the app's ``APPMETRICS_SLOS``) and, with Redis, windows every process
shares.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .slo.objectives import Declaration, threshold_problem
from .slo.routes import RouteInfo, routes_of
from .slo.tracker import SloTracker, WindowFactory

if TYPE_CHECKING:
    from flask import Flask

    from .settings import Settings


def refuse_unmeasurable(declarations: Sequence[Declaration], buckets: Sequence[float]) -> None:
    """Raise for the first declaration whose latency threshold is no bucket boundary.

    :raises ConfigurationError: naming the declaration and the boundaries there are.
    """
    for declaration in declarations:
        problem = threshold_problem(declaration, buckets)
        if problem is not None:
            raise ConfigurationError(declaration.source, problem)


def build_tracker(
    app: Flask,
    settings: Settings,
    declarations: Callable[[], Sequence[Declaration]],
    *,
    own_blueprints: frozenset[str],
    window_factory: WindowFactory | None = None,
    on_internal_error: Callable[[str], None] | None = None,
) -> SloTracker:
    """The tracker ``init_app`` gives *app*.

    :param declarations: the extension's declarations, read at resolution time (they
        may grow after this call).
    :param window_factory: makes each objective's window (Redis-shared ones, say).
    """
    target = weakref.ref(app)
    configured = settings.slo.declarations

    def routes() -> tuple[Sequence[RouteInfo], Mapping[str, Any]]:
        live = target()
        if live is None:
            return (), {}
        return routes_of(live.url_map.iter_rules()), dict(live.view_functions)

    def applying() -> Sequence[Declaration]:
        return (*declarations(), *configured)

    return SloTracker(
        applying,
        routes,
        own_blueprints=own_blueprints,
        buckets=settings.http.buckets,
        period_seconds=settings.slo.period_seconds,
        min_requests=settings.health.min_requests,
        window_factory=window_factory,
        on_internal_error=on_internal_error,
    )
