"""The health blueprint: ``/api/health``, ``/livez`` and ``/readyz``.

* ``/api/health`` (``APPMETRICS_HEALTH_PATH``): the full judgement of
  :meth:`~flask_appmetrics.health.monitor.HealthMonitor.evaluate`, in its JSON; 200 when
  ``healthy`` or ``degraded``, 503 when ``unhealthy``.
* ``/livez`` (``APPMETRICS_LIVEZ_PATH``): 200 whenever the process serves requests; ignores
  dependencies, so Kubernetes restarts only a wedged process, not one whose database is down.
* ``/readyz`` (``APPMETRICS_READYZ_PATH``): the registered checks only; 503 when a critical
  one fails. Traffic windows are left out on purpose: a readiness that failed on error
  ratio would take every replica out of service at once when a dependency fails. While
  the server drains (told to stop, see :mod:`flask_appmetrics.health.draining`) it answers
  503 with the reason and runs no check.

A client that asks for ``application/health+json`` gets the format of the IETF draft
(draft-inadarei-api-health-check): ``pass``/``warn``/``fail`` and ``checks`` keyed
``component:measurement``. Every response is ``Cache-Control: no-store``; a failure of the
health code itself answers 503, never 500.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app

from ..slo.burn import FAST_BURN, duration
from .responses import ErrorCounter, failed, health_json, wants_health_json
from .status_page import wants_html

if TYPE_CHECKING:
    from ..health.checks import CheckResult
    from ..health.monitor import HealthMonitor, HealthReport
    from ..settings import EndpointSettings
    from .guard import Guard
    from .status_page import StatusPage

#: Name of the blueprint serving the health endpoints (kept out of the health windows).
HEALTH_BLUEPRINT = "appmetrics_health"

_IETF_STATUS = {"healthy": "pass", "degraded": "warn", "unhealthy": "fail"}
#: Whose requests an objective's figures count, in words.
_VIEWS = {"process": "this process's requests", "shared": "every process's requests"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _observed(result: CheckResult, fallback: str) -> str:
    # When the result was obtained: a reused one is older than the response.
    if not result.observed_at:
        return fallback
    return datetime.fromtimestamp(result.observed_at, timezone.utc).isoformat(
        timespec="milliseconds"
    )


def _check_entries(results: tuple[CheckResult, ...], time: str) -> dict[str, list[dict[str, Any]]]:
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        entry: dict[str, Any] = {
            "componentType": "component",
            "observedValue": round(result.duration_seconds * 1000.0, 3),
            "observedUnit": "ms",
            "status": "pass" if result.passed else ("fail" if result.critical else "warn"),
            "time": _observed(result, time),
        }
        if result.error is not None:
            entry["output"] = result.error
        checks[f"{result.name}:responseTime"] = [entry]
    return checks


def ietf_body(report: HealthReport, description: str) -> dict[str, Any]:
    """*report* in the IETF draft's format (draft-inadarei-api-health-check)."""
    time = _now()
    checks: dict[str, list[dict[str, Any]]] = {
        "http:errorRatio": [
            {
                "componentType": "system",
                "observedValue": round(report.requests.error_ratio, 6),
                "observedUnit": "ratio",
                "status": _IETF_STATUS[report.error_status],
                "time": time,
                "output": f"{report.requests.errors} of {report.requests.requests} requests "
                f"failed in the last {report.requests.window_seconds:g} s",
            }
        ],
        "http:responseTime": [
            {
                "componentType": "system",
                "observedValue": round(report.latency.p95 * 1000.0, 3),
                "observedUnit": "ms",
                "status": _IETF_STATUS[report.latency_status],
                "time": time,
                "output": f"p95 of the last {report.latency.count} requests",
            }
        ],
        "users:concurrent": [
            {
                "componentType": "system",
                "observedValue": report.concurrent_users,
                "status": "pass",
                "time": time,
            }
        ],
        "uptime": [
            {
                "componentType": "system",
                "observedValue": round(report.uptime_seconds, 3),
                "observedUnit": "s",
                "status": "pass",
                "time": time,
            }
        ],
    }
    checks.update(_check_entries(report.checks, time))
    for objective in report.objectives:
        # The fast burn's long window: what makes the app degraded when its short one agrees.
        rate = objective.burn_rate(FAST_BURN.long_seconds)
        checks[f"{objective.objective.name}:{objective.objective.sli}BurnRate"] = [
            {
                "componentType": "system",
                "observedValue": round(rate, 6),
                "status": "warn" if objective.fast_burn else "pass",
                "time": time,
                "output": f"{objective.objective.describe()}: error budget burning "
                f"{rate:.2f}x over {duration(FAST_BURN.long_seconds)}, "
                f"{objective.budget_remaining:.1%} of it left "
                f"({_VIEWS[objective.scope]})",
            }
        ]
    for service, state in report.breakers.items():
        checks[f"{service}:circuitBreaker"] = [
            {
                "componentType": "component",
                "observedValue": state,
                "status": "warn" if state == "open" else "pass",
                "time": time,
            }
        ]
    body: dict[str, Any] = {
        "status": _IETF_STATUS[report.status],
        "description": description,
        "checks": checks,
    }
    if report.reasons:
        body["output"] = "; ".join(report.reasons)
    return body


def health_blueprint(
    endpoints: EndpointSettings,
    monitor: HealthMonitor,
    guard: Guard,
    page: StatusPage | None,
    count_internal_error: ErrorCounter,
) -> Blueprint | None:
    """The blueprint serving the health endpoints whose path is set, or ``None`` if none.

    :param monitor: the app's health monitor.
    :param guard: who may read what (the summary, the details, ``/readyz``).
    :param page: the status page, served at ``/api/health`` to browsers allowed to see it.
    :param count_internal_error: counts a failure of ours (answered 503).
    """

    def health_failed() -> Response:
        return failed("health", count_internal_error)

    def readyz_failed() -> Response:
        return failed("readyz", count_internal_error)

    def health_view() -> Response:
        """``GET /api/health``: the app's health; 503 when unhealthy."""
        refused = guard.refusal("health", health_failed)
        if refused is not None:
            return refused
        try:
            if page is not None and wants_html() and guard.sees_details():
                # A browser: the status page (JSON clients and probes never ask for HTML).
                return page.response()
            report = monitor.evaluate()
            if wants_health_json():
                body = ietf_body(report, f"health of {current_app.name}")
            else:
                body = report.as_dict()
            return health_json(guard.visible(body), report.http_status)
        except Exception:
            return health_failed()

    def livez_view() -> Response:
        """``GET /livez``: 200 while the process serves requests."""
        return health_json({"status": "pass"}, 200)

    def readyz_view() -> Response:
        """``GET /readyz``: the checks; 503 when a critical one fails or while draining."""
        body: dict[str, Any]
        refused = guard.refusal("readyz", readyz_failed)
        if refused is not None:
            return refused
        try:
            drain = monitor.draining()
            if drain is not None:
                # Out of the load balancer's rotation while requests are still served.
                body = {"status": "fail", "reason": drain.describe()}
                if wants_health_json():
                    body["output"] = body.pop("reason")
                return health_json(guard.visible(body), 503)
            results = monitor.run_checks()
            if any(not r.passed and r.critical for r in results):
                status, code = "fail", 503
            elif any(not r.passed for r in results):
                status, code = "warn", 200
            else:
                status, code = "pass", 200
            body = {"status": status}
            if wants_health_json():
                body["checks"] = _check_entries(results, _now())
            else:
                body["checks"] = {r.name: r.as_dict() for r in results}
            return health_json(guard.visible(body), code)
        except Exception:
            return readyz_failed()

    routes = (
        (endpoints.health_path, "health", health_view),
        (endpoints.livez_path, "livez", livez_view),
        (endpoints.readyz_path, "readyz", readyz_view),
    )
    if all(path is None for path, _, _ in routes):
        return None
    blueprint = Blueprint(HEALTH_BLUEPRINT, __name__)
    for path, name, view in routes:
        if path is not None:
            blueprint.add_url_rule(path, name, view, methods=["GET"])
    return blueprint
