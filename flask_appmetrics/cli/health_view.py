"""The health report as ``flask appmetrics status`` prints it, and its exit code."""

from __future__ import annotations

from typing import Any

#: Exit codes by status (the Nagios plugin convention): 3 when no report could be read.
EXIT_CODES = {"healthy": 0, "pass": 0, "degraded": 1, "warn": 1, "unhealthy": 2, "fail": 2}
UNKNOWN = 3

_SCOPES = {"process": "this process's view", "shared": "shared view, every process"}


def exit_code(body: dict[str, Any]) -> int:
    return EXIT_CODES.get(str(body.get("status")), UNKNOWN)


def _objective_lines(objectives: list[dict[str, Any]]) -> list[str]:
    lines = []
    for item in objectives:
        rates = item.get("burn_rates", {})
        burns = "  ".join(f"{window} {rate:.2f}x" for window, rate in rates.items())
        scope = _SCOPES.get(item.get("scope", ""), item.get("scope", "?"))
        lines.append(
            f"    {item['name']} ({item['sli']}): {item.get('status', '?')}, "
            f"{item.get('objective', '')} ({scope})"
        )
        lines.append(
            f"      budget left {item.get('budget_remaining', 0.0):.1%} of "
            f"{item.get('window_days', 0):g} days ({item.get('requests', 0)} requests, "
            f"{item.get('bad_requests', 0)} bad, over {item.get('observed_seconds', 0):g} s)"
        )
        lines.append(f"      burn rate  {burns}")
        if item.get("burning"):
            lines.append(f"      burning: {', '.join(item['burning'])}")
    return lines


def render(body: dict[str, Any], source: str) -> list[str]:
    """*body* (the ``/api/health`` JSON, whole or the public summary) in lines."""
    lines = [f"{source}: {body.get('status', 'unknown')}"]
    for reason in body.get("reasons", []):
        lines.append(f"  why: {reason}")
    if "recent_requests_5min" in body:
        scope = _SCOPES.get(body.get("scope", ""), "")
        lines.append(
            f"  requests in the last {body.get('error_window_seconds', 300):g} s: "
            f"{body['recent_requests_5min']}, {body.get('recent_errors_5min', 0)} errors "
            f"({body.get('error_ratio_5min', 0.0):.1%}); p95 "
            f"{body.get('p95_response_time_ms', 0.0):g} ms ({scope})"
        )
    else:
        lines.append(
            f"  recent errors: {body.get('recent_errors_5min', '?')}, average response "
            f"{body.get('avg_response_time_ms', '?')} ms (summary only: details need "
            "credentials)"
        )
    checks = body.get("checks", {})
    if checks:
        shown = [
            f"{name} {'ok' if result.get('status') == 'pass' else 'FAILED'}"
            + (f" ({result['error']})" if result.get("error") else "")
            for name, result in checks.items()
        ]
        lines.append(f"  checks: {', '.join(shown)}")
    breakers = body.get("circuit_breakers", {})
    if breakers:
        lines.append("  circuit breakers: " + ", ".join(f"{k} {v}" for k, v in breakers.items()))
    objectives = body.get("objectives")
    if objectives:
        lines.append("  service level objectives:")
        lines += _objective_lines(objectives)
    return lines
