"""A status page for people: the health verdict, the checks and a plot of recent traffic.

Served at ``APPMETRICS_STATUS_PATH`` (default ``/status``), and at ``/api/health`` when a
browser asks for HTML (``Accept: text/html`` preferred over JSON; API clients and probes,
which send ``*/*`` or ask for JSON, keep getting JSON). One self-contained HTML document:
inline CSS, JavaScript and SVG, nothing fetched from elsewhere, so it works on a machine
with no way out. Rendered from ``templates/status.html`` with Jinja2, autoescaped: every
value is escaped for its context (HTML text and attributes, ``|tojson`` in scripts). The
page polls ``<status path>?format=json`` every ``APPMETRICS_STATUS_REFRESH_SECONDS``: the
``/api/health`` body plus the recent samples of the health windows (the latency ring, and
requests and errors per time slot).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import jinja2
from flask import Blueprint, Response, current_app, request, url_for

from .._version import __version__
from .responses import ErrorCounter, failed, no_store

if TYPE_CHECKING:
    from ..health.monitor import HealthMonitor
    from ..health.windows import RequestCounts
    from ..settings import StatusSettings
    from .guard import Guard

#: Name of the status page's blueprint (kept out of the health windows).
STATUS_BLUEPRINT = "appmetrics_status"

#: Banner colours by status (also what tests look for in screenshots).
STATUS_COLOURS = {
    "healthy": "#2e7d32",
    "degraded": "#f9a825",
    "unhealthy": "#c62828",
    "unknown": "#616161",
}
#: Colour of the latency line and of the error bars in the plot.
LATENCY_COLOUR = "#1565c0"
ERROR_COLOUR = "#d81b60"

# A private environment rather than the app's render_template: an app's own
# templates/status.html (or a loader, filter or autoescape setting of its own) must
# neither replace nor change our page. Autoescape on: every value is HTML-escaped, and
# |tojson (Jinja2's, which escapes <, > and &) carries data into the script.
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("flask_appmetrics.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    auto_reload=False,
)
# The embedded snapshot keeps the key order of the JSON the page polls (checks in the
# order they were registered), instead of Jinja2's default sorted keys.
_TEMPLATES.policies["json.dumps_kwargs"] = {"sort_keys": False}


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


def snapshot(monitor: HealthMonitor) -> dict[str, Any]:
    """What the page shows: the health report (as ``/api/health``) and the window samples."""
    body = monitor.evaluate().as_dict()
    body["series"] = series(monitor)
    return body


def wants_html() -> bool:
    """Whether the client prefers HTML to JSON (a browser, not curl or a probe)."""
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/html"])
    return best == "text/html" and accept["text/html"] > accept["application/json"]


def _http_status(data: dict[str, Any]) -> int:
    # The same contract as /api/health: whatever reads the status code sees the verdict.
    return 503 if data["status"] == "unhealthy" else 200


class StatusPage:
    """The status page of one app: renders its monitor's verdict and samples.

    :param path: where it is served (``APPMETRICS_STATUS_PATH``).
    :param refresh_seconds: how often the page polls its data.
    :param monitor: the app's health monitor.
    """

    def __init__(self, path: str, refresh_seconds: float, monitor: HealthMonitor) -> None:
        self.path = path
        self.refresh_seconds = refresh_seconds
        self.monitor = monitor

    def response(self) -> Response:
        """The HTML page; 503 when unhealthy, like ``/api/health``."""
        refresh = self.refresh_seconds
        data = snapshot(self.monitor)
        html = _TEMPLATES.get_template("status.html").render(
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
            latency_colour=LATENCY_COLOUR,
            error_colour=ERROR_COLOUR,
        )
        return no_store(Response(html, status=_http_status(data), mimetype="text/html"))

    def data_response(self) -> Response:
        """The page's data as JSON (what the page polls)."""
        data = snapshot(self.monitor)
        return no_store(
            Response(json.dumps(data), status=_http_status(data), mimetype="application/json")
        )


def status_page(settings: StatusSettings, monitor: HealthMonitor) -> StatusPage | None:
    """The app's status page, or ``None`` when ``APPMETRICS_STATUS_PATH`` turns it off."""
    if settings.path is None:
        return None
    return StatusPage(settings.path, settings.refresh_seconds, monitor)


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
