"""Burn rates: how fast an objective spends its error budget, and when that is alarming.

The burn rate over a window is the bad share of its requests divided by the objective's
budget (``1 - target``): 1 spends the budget exactly over the objective period, 14.4
spends 2 % of a 30-day budget in one hour. Alerts follow the multi-window, multi-burn-rate
method of the Google SRE workbook ("Alerting on SLOs"): each alert needs the burn rate
above its threshold over a long window (the budget is really being spent) *and* over a
short one (it still is, so the alert stops soon after the problem does).

:data:`BURN_ALERTS` is the workbook's table. Each row is a share of the period's budget
spent within its long window; its threshold is ``share * period / long window``, which
for a 30-day period gives the workbook's numbers:

======  ============  =============  ======  ===============  ========
alert   long window   short window   budget  burn threshold   action
======  ============  =============  ======  ===============  ========
fast    1 h           5 m            2 %     14.4             page
slow    6 h           30 m           5 %     6                page
steady  3 d           6 h            10 %    1                ticket
======  ============  =============  ======  ===============  ========

A shorter or longer period (``APPMETRICS_SLO_WINDOW_DAYS``) keeps the budget shares and
scales the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .objectives import Objective
from .windows import ObjectiveWindow, WindowCounts, WindowScope

Severity = Literal["critical", "warning"]

_UNITS = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float) -> str:
    """A Prometheus duration: ``300`` -> ``5m``, ``259200`` -> ``3d``."""
    whole = round(seconds)
    for unit, size in _UNITS:
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


@dataclass(frozen=True)
class BurnAlert:
    """One row of the alerting table.

    :param name: ``fast``, ``slow`` or ``steady``; the alert is ``FlaskAppSLO<Name>Burn``.
    :param long_seconds: the window that shows the budget is really being spent.
    :param short_seconds: the window that shows it still is.
    :param budget_share: the share of the period's budget spent over the long window at
        the threshold.
    :param severity: ``critical`` (page someone) or ``warning`` (open a ticket).
    """

    name: str
    long_seconds: float
    short_seconds: float
    budget_share: float
    severity: Severity

    @property
    def alert_name(self) -> str:
        return f"FlaskAppSLO{self.name.capitalize()}Burn"

    @property
    def action(self) -> str:
        return "page" if self.severity == "critical" else "ticket"

    def threshold(self, period_seconds: float) -> float:
        """The burn rate above which this alert fires, for an objective period."""
        return round(self.budget_share * period_seconds / self.long_seconds, 9)


BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("fast", 3600.0, 300.0, 0.02, "critical"),
    BurnAlert("slow", 21_600.0, 1800.0, 0.05, "critical"),
    BurnAlert("steady", 259_200.0, 21_600.0, 0.10, "warning"),
)
#: The alert whose condition makes the health report ``degraded``.
FAST_BURN = BURN_ALERTS[0]


def burn_windows() -> tuple[float, ...]:
    """Every window the alerts read, shortest first."""
    return tuple(
        sorted({a.short_seconds for a in BURN_ALERTS} | {a.long_seconds for a in BURN_ALERTS})
    )


@dataclass(frozen=True)
class WindowBurn:
    """An objective's requests over one window, and the burn rate they make."""

    counts: WindowCounts
    burn_rate: float

    @property
    def window(self) -> str:
        return duration(self.counts.seconds)


@dataclass(frozen=True)
class ObjectiveStatus:
    """An objective as one evaluation sees it.

    :param objective: the objective.
    :param period_seconds: the rolling period its budget covers.
    :param observed_seconds: how much of the period the windows have seen (a process
        younger than the period knows its own life only).
    :param windows: the burn rate over each alerting window, shortest first.
    :param period: the requests over the whole period.
    :param burning: the names of the alerts (``fast``, ``slow``, ``steady``) whose
        condition holds now.
    :param judged: the fast alert's long window holds enough requests to judge by
        (``APPMETRICS_HEALTH_MIN_REQUESTS``); below that a fast burn changes nothing.
    :param scope: ``process`` (this process's requests) or ``shared`` (every process's,
        through Redis).
    """

    objective: Objective
    period_seconds: float
    observed_seconds: float
    windows: tuple[WindowBurn, ...]
    period: WindowCounts
    burning: tuple[str, ...]
    judged: bool
    scope: WindowScope

    @property
    def budget_remaining(self) -> float:
        """The share of the period's budget left: 1 untouched, 0 spent, below 0 overspent."""
        return 1.0 - self.period.bad_ratio / self.objective.budget

    @property
    def fast_burn(self) -> bool:
        """The fast alert's condition holds over enough requests to judge by."""
        return self.judged and FAST_BURN.name in self.burning

    def burn_rate(self, seconds: float) -> float:
        for window in self.windows:
            if window.counts.seconds == seconds:
                return window.burn_rate
        raise KeyError(seconds)

    def reason(self) -> str:
        """Why a fast burn degrades the app, in one line."""
        objective = self.objective
        threshold = FAST_BURN.threshold(self.period_seconds)
        long = self.burn_rate(FAST_BURN.long_seconds)
        short = self.burn_rate(FAST_BURN.short_seconds)
        return (
            f"objective {objective.name!r} ({objective.sli}) burns its error budget "
            f"{long:.1f}x over {duration(FAST_BURN.long_seconds)} and {short:.1f}x over "
            f"{duration(FAST_BURN.short_seconds)} (fast burn above {threshold:g}x)"
        )

    def as_dict(self) -> dict[str, Any]:
        objective = self.objective
        return {
            "name": objective.name,
            "sli": objective.sli,
            "objective": objective.describe(),
            "target": objective.target,
            "threshold_ms": None
            if objective.threshold_seconds is None
            else round(objective.threshold_seconds * 1000.0, 3),
            "status": "degraded" if self.fast_burn else "healthy",
            "scope": self.scope,
            "window_days": round(self.period_seconds / 86_400, 6),
            "observed_seconds": round(self.observed_seconds, 3),
            "requests": self.period.requests,
            "bad_requests": self.period.bad,
            "budget_remaining": round(self.budget_remaining, 6),
            "burn_rates": {w.window: round(w.burn_rate, 6) for w in self.windows},
            "burning": list(self.burning),
        }


def _burn(counts: WindowCounts, budget: float) -> WindowBurn:
    return WindowBurn(counts, counts.bad_ratio / budget)


def evaluate(
    objective: Objective,
    window: ObjectiveWindow,
    *,
    period_seconds: float,
    observed_seconds: float,
    min_requests: int,
) -> ObjectiveStatus:
    """Read *window* into the status of *objective*.

    :param observed_seconds: how long the window has been counting.
    :param min_requests: requests the fast alert's long window needs to judge by.
    """
    budget = objective.budget
    windows = tuple(_burn(window.counts(s), budget) for s in burn_windows())
    by_span = {w.counts.seconds: w for w in windows}
    burning = tuple(
        alert.name
        for alert in BURN_ALERTS
        if by_span[alert.long_seconds].burn_rate > alert.threshold(period_seconds)
        and by_span[alert.short_seconds].burn_rate > alert.threshold(period_seconds)
    )
    long = by_span[FAST_BURN.long_seconds].counts.requests
    return ObjectiveStatus(
        objective=objective,
        period_seconds=period_seconds,
        observed_seconds=min(observed_seconds, period_seconds),
        windows=windows,
        period=window.counts(period_seconds),
        burning=burning,
        judged=long > 0 and long >= min_requests,
        scope=window.scope,
    )


def describe_alert(alert: BurnAlert, period_seconds: float) -> str:
    """One line for docs and ``flask appmetrics check``."""
    return (
        f"{alert.alert_name} ({alert.action}): burn rate above "
        f"{alert.threshold(period_seconds):g}x over {duration(alert.long_seconds)} and "
        f"{duration(alert.short_seconds)} ({alert.budget_share * 100:g}% of the budget in "
        f"{duration(alert.long_seconds)})"
    )
