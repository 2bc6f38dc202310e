"""What ``flask appmetrics check`` reports: the effective settings (secrets hidden) and
every problem of the configuration and of the service level objectives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..app_state import AppState
from ..config import DEFAULTS, load_settings
from ..errors import ConfigurationError
from ..slo.burn import BURN_ALERTS, describe_alert, duration

#: Keys whose value is a secret: shown as set or not, never printed.
SECRET_KEYS = frozenset(
    {"APPMETRICS_AUTH_TOKEN", "APPMETRICS_AUTH_PASSWORD", "APPMETRICS_SENTRY_DSN"}
)
#: Longest value printed whole; longer ones (the Gemini price table) are cut.
_MAX_SHOWN = 100


def shown_value(key: str, value: Any) -> str:
    """*value* of *key* as ``check`` prints it: secrets hidden, URLs without passwords."""
    if key in SECRET_KEYS and value is not None:
        return "<set, hidden>"
    if key == "APPMETRICS_REDIS_URL" and isinstance(value, str):
        parts = urlsplit(value)
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
            netloc += f":{parts.port}" if parts.port else ""
            value = urlunsplit(parts._replace(netloc=netloc))
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def effective_settings(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every ``APPMETRICS_*`` key with the value the app runs with."""
    return [(key, shown_value(key, config.get(key, DEFAULTS[key]))) for key in sorted(DEFAULTS)]


@dataclass
class CheckReport:
    """Problems found: errors fail the check, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)


def check_app(config: Mapping[str, Any], state: AppState) -> CheckReport:
    """Validate *config* again (as it is now) and resolve the app's objectives."""
    report = CheckReport()
    try:
        load_settings(dict(config))
    except ConfigurationError as exc:
        report.errors.append(str(exc))
    resolution = state.slo.resolution()
    report.errors += resolution.problems
    report.warnings += resolution.notes
    period = state.slo.period_seconds
    for resolved in resolution.objectives:
        objective = resolved.objective
        report.objectives.append(
            f"{objective.name} ({objective.sli}): {objective.describe()} over "
            f"{duration(period)}; counts {resolved.selection.describe()} "
            f"[{resolved.source}]"
        )
        ceiling = 1.0 / objective.budget
        for alert in BURN_ALERTS:
            if alert.threshold(period) >= ceiling:
                report.warnings.append(
                    f"{objective.name} ({objective.sli}): with a target of "
                    f"{objective.target:g}, {alert.alert_name} can never fire (a burn rate "
                    f"of {alert.threshold(period):g}x needs more than every request to fail)"
                )
    return report


def alert_lines(period_seconds: float) -> list[str]:
    return [describe_alert(alert, period_seconds) for alert in BURN_ALERTS]
