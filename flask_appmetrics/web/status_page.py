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
from ..app_state import state_of

if TYPE_CHECKING:
    from ..health.monitor import HealthMonitor
    from ..health.windows import RequestCounts
    from ..settings import StatusSettings

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


def _settings() -> StatusSettings | None:
    state = state_of(current_app)
    return state.status if state is not None else None


def _monitor() -> HealthMonitor:
    state = state_of(current_app)
    if state is None or state.health is None:  # pragma: no cover - set by init_app
        raise RuntimeError("flask-appmetrics health monitor missing")
    return state.health


def denied() -> Response | None:
    """The refusal of the current request, or ``None`` if it may see the page.

    The page shows health details (checks, reasons, breakers, samples), so it follows
    ``APPMETRICS_AUTH_HEALTH``: public with ``none``, else for authorised clients only.
    """
    state = state_of(current_app)
    guard = state.auth if state is not None else None
    if guard is None or guard.settings.health == "none":
        return None
    return guard.deny()


def offered() -> bool:
    """Whether ``/api/health`` answers the current request with the page: the page is on,
    the client prefers HTML, and it may see details (else it gets the JSON summary)."""
    state = state_of(current_app)
    if state is None or state.status is None or state.status.path is None or not wants_html():
        return False
    guard = state.auth
    return guard is None or guard.settings.health == "none" or guard.authorized()


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept")
    return response


def page_response() -> Response:
    """The HTML page for the current app; 503 when unhealthy, like ``/api/health``."""
    settings = _settings()
    refresh = settings.refresh_seconds if settings is not None else 5.0
    data = snapshot(_monitor())
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
    return _no_store(Response(html, status=_http_status(data), mimetype="text/html"))


def _http_status(data: dict[str, Any]) -> int:
    # The same contract as /api/health: whatever reads the status code sees the verdict.
    return 503 if data["status"] == "unhealthy" else 200


def status_view() -> Response:
    """``GET /status``: the page; its data with ``?format=json`` or ``Accept: application/json``.

    Like ``/api/health``, a failure of the health code itself answers 503, never 500.
    """
    from .health_views import failed, refusal

    refused = refusal(denied, "status_page")
    if refused is not None:
        return refused
    try:
        fmt = request.args.get("format")
        accept = request.accept_mimetypes
        if fmt == "json" or (fmt is None and accept["application/json"] > accept["text/html"]):
            data = snapshot(_monitor())
            return _no_store(
                Response(json.dumps(data), status=_http_status(data), mimetype="application/json")
            )
        return page_response()
    except Exception:
        return _no_store(failed("status_page"))


def status_blueprint(settings: StatusSettings) -> Blueprint | None:
    """The blueprint serving the page at ``settings.path`` (``None`` when turned off)."""
    if settings.path is None:
        return None
    blueprint = Blueprint(STATUS_BLUEPRINT, __name__)
    blueprint.add_url_rule(settings.path, "status", status_view, methods=["GET"])
    return blueprint
