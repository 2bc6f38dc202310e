"""A status page for people: the verdict, traffic over time, the busiest endpoints, the
LLM block, quota headroom, caches, circuit breakers and checks, at a glance.

Served at ``APPMETRICS_STATUS_PATH`` (default ``/status``), and at ``/api/health`` when a
browser asks for HTML (``Accept: text/html`` preferred over JSON; API clients and probes,
which send ``*/*`` or ask for JSON, keep getting JSON). One self-contained HTML document:
inline CSS, JavaScript and SVG, nothing fetched from elsewhere, so it works on a machine
with no way out; light or dark as the browser prefers, one column on a phone. It polls
``<status path>?format=json`` every ``APPMETRICS_STATUS_REFRESH_SECONDS`` and updates its
elements in place: the ``/api/health`` body, the recent samples of the health windows, and
the figures :mod:`~flask_appmetrics.web.status_data` reads from the registry ``/metrics``
serves.

The page is rendered from the Jinja2 template ``appmetrics/status.html``, looked up in the
app's templates first, so an app replaces or extends it with its own
``templates/appmetrics/status.html`` (which usually extends
``appmetrics/status_layout.html`` and overrides blocks). It is rendered in an environment
of its own with autoescape on whatever the app's settings: every value is escaped for its
context (HTML text and attributes, ``|tojson`` in scripts).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import jinja2
from flask import Blueprint, Flask, Response, current_app, request, url_for
from prometheus_client import CollectorRegistry

from .._version import __version__
from .responses import ErrorCounter, failed, no_store
from .status_data import TrafficHistory, caches, llm, quota, read_samples, reading_of, traffic

if TYPE_CHECKING:
    from ..health.monitor import HealthMonitor
    from ..health.windows import RequestCounts
    from ..settings import StatusSettings
    from .guard import Guard

logger = logging.getLogger(__name__)

#: Name of the status page's blueprint (kept out of the health windows).
STATUS_BLUEPRINT = "appmetrics_status"
#: The template rendered; an app's own of this name replaces it.
TEMPLATE = "appmetrics/status.html"

#: Banner colours by status (also what tests look for in screenshots).
STATUS_COLOURS = {
    "healthy": "#2e7d32",
    "degraded": "#f9a825",
    "unhealthy": "#c62828",
    "unknown": "#616161",
}
#: Colours of the charts' series, readable on the light and the dark background.
SERIES_COLOURS = {
    "rps": "#1e88e5",
    "errors": "#d81b60",
    "p50": "#00897b",
    "p95": "#8e24aa",
}
#: The config key of the daily LLM budget the LLM block compares today's cost with.
BUDGET_KEY = "APPMETRICS_GEMINI_DAILY_BUDGET_USD"


@runtime_checkable
class LatencySamples(Protocol):
    """A latency window that can list its samples (the in-process ring can)."""

    def recent(self) -> tuple[float, ...]: ...


@runtime_checkable
class RequestSeries(Protocol):
    """A request window that can give its counts per time slot."""

    def series(self) -> tuple[RequestCounts, ...]: ...


def series(monitor: HealthMonitor) -> dict[str, Any]:
    """Recent samples of *monitor*'s windows; empty lists for windows that keep none."""
    latency = monitor.latency
    requests = monitor.requests
    slots = requests.series() if isinstance(requests, RequestSeries) else ()
    return {
        "latency_ms": (
            [round(v * 1000.0, 3) for v in latency.recent()]
            if isinstance(latency, LatencySamples)
            else []
        ),
        "buckets": [{"requests": s.requests, "errors": s.errors} for s in slots],
        "bucket_seconds": slots[0].window_seconds if slots else 0.0,
        "window_seconds": sum(s.window_seconds for s in slots),
    }


def wants_html() -> bool:
    """Whether the client prefers HTML to JSON (a browser, not curl or a probe)."""
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/html"])
    return best == "text/html" and accept["text/html"] > accept["application/json"]


def _http_status(data: dict[str, Any]) -> int:
    # The same contract as /api/health: whatever reads the status code sees the verdict.
    return 503 if data["status"] == "unhealthy" else 200


def _budget() -> float | None:
    value = current_app.config.get(BUDGET_KEY)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def environment(app: Flask) -> jinja2.Environment:
    """The page's Jinja2 environment: *app*'s template folders first (an app's own
    ``appmetrics/status.html`` wins), then ours. Private, so that the app's autoescape,
    filters and globals change nothing: autoescape on, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                app.create_global_jinja_loader(),
                jinja2.PackageLoader("flask_appmetrics.web", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # The embedded snapshot keeps the key order of the JSON the page polls (checks in the
    # order they were registered), instead of Jinja2's default sorted keys.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    env.globals["url_for"] = url_for
    return env


class StatusPage:
    """The status page of one app: renders its monitor's verdict and the registry's figures.

    :param path: where it is served (``APPMETRICS_STATUS_PATH``).
    :param refresh_seconds: how often the page polls its data.
    :param monitor: the app's health monitor.
    :param templates: the page's Jinja2 environment (:func:`environment`).
    :param registry: the registry ``/metrics`` serves (a fresh aggregate per call in
        multiprocess mode); ``None`` shows the health report alone.
    :param own_paths: the extension's own paths, left out of the traffic figures.
    :param on_error: counts a failure to read the figures (the page still shows health).
    """

    def __init__(
        self,
        path: str,
        refresh_seconds: float,
        monitor: HealthMonitor,
        templates: jinja2.Environment,
        *,
        registry: Callable[[], CollectorRegistry] | None = None,
        own_paths: Iterable[str] = (),
        on_error: ErrorCounter | None = None,
    ) -> None:
        self.path = path
        self.refresh_seconds = refresh_seconds
        self.monitor = monitor
        self.templates = templates
        self.registry = registry
        self.own_paths = frozenset(own_paths)
        self._on_error = on_error
        #: Readings of the request counters over the health window (about two per refresh
        #: period at most, however many pages poll).
        self.history = TrafficHistory(
            monitor.settings.error_window_seconds, min_interval=refresh_seconds / 2.0
        )

    def data(self) -> dict[str, Any]:
        """What the page shows: the health report (as ``/api/health``), the health
        windows' samples and the registry's figures."""
        body = self.monitor.evaluate().as_dict()
        body["series"] = series(self.monitor)
        body.update(self._figures())
        return body

    def _figures(self) -> dict[str, Any]:
        if self.registry is None:
            return {}
        try:
            samples = read_samples(self.registry())
            latest = reading_of(samples, self.history.clock(), self.own_paths)
            self.history.add(latest)
            return {
                "traffic": traffic(self.history, latest),
                "endpoints": self.history.endpoints(latest),
                "llm": llm(samples, _budget()),
                "quota": quota(samples),
                "caches": caches(samples),
            }
        except Exception:
            # The verdict still shows: a figure that cannot be read is no reason to hide it.
            logger.exception("flask-appmetrics: the status page could not read the metrics")
            if self._on_error is not None:
                self._on_error("status_page")
            return {}

    def response(self) -> Response:
        """The HTML page; 503 when unhealthy, like ``/api/health``."""
        refresh = self.refresh_seconds
        data = self.data()
        html = self.templates.get_template(TEMPLATE).render(
            app_name=current_app.name,
            status=data["status"],
            reasons="; ".join(data["reasons"]) or "All good.",
            snapshot=data,
            # Behind a proxy the URL carries X-Forwarded-Prefix: client-controlled text.
            data_url=url_for(f"{STATUS_BLUEPRINT}.status", format="json"),
            refresh=f"{refresh:g}",
            refresh_ms=round(refresh * 1000.0),
            version=__version__,
            colours=STATUS_COLOURS,
            series_colours=SERIES_COLOURS,
        )
        return no_store(Response(html, status=_http_status(data), mimetype="text/html"))

    def data_response(self) -> Response:
        """The page's data as JSON (what the page polls)."""
        data = self.data()
        return no_store(
            Response(json.dumps(data), status=_http_status(data), mimetype="application/json")
        )


def status_page(
    app: Flask,
    settings: StatusSettings,
    monitor: HealthMonitor,
    *,
    registry: Callable[[], CollectorRegistry] | None = None,
    own_paths: Iterable[str] = (),
    on_error: ErrorCounter | None = None,
) -> StatusPage | None:
    """*app*'s status page, or ``None`` when ``APPMETRICS_STATUS_PATH`` turns it off."""
    if settings.path is None:
        return None
    return StatusPage(
        settings.path,
        settings.refresh_seconds,
        monitor,
        environment(app),
        registry=registry,
        own_paths=own_paths,
        on_error=on_error,
    )


def status_blueprint(
    page: StatusPage, guard: Guard, count_internal_error: ErrorCounter
) -> Blueprint:
    """The blueprint serving *page* at its path.

    The page shows health details (checks, reasons, breakers, samples), so *guard* lets
    through whoever may read them (``APPMETRICS_AUTH_HEALTH``).
    """

    def on_failure() -> Response:
        return failed("status_page", count_internal_error)

    def status_view() -> Response:
        """``GET /status``: the page; its data with ``?format=json`` or
        ``Accept: application/json``. A failure of the health code itself answers 503,
        never 500, like ``/api/health``."""
        refused = guard.refusal("details", on_failure)
        if refused is not None:
            return refused
        try:
            fmt = request.args.get("format")
            accept = request.accept_mimetypes
            if fmt == "json" or (fmt is None and accept["application/json"] > accept["text/html"]):
                return page.data_response()
            return page.response()
        except Exception:
            return on_failure()

    blueprint = Blueprint(STATUS_BLUEPRINT, __name__)
    blueprint.add_url_rule(page.path, "status", status_view, methods=["GET"])
    return blueprint
