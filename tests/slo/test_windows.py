"""The objectives' windows and burn rates, on a clock moved by hand."""

from __future__ import annotations

import pytest

from flask_appmetrics.slo.burn import BURN_ALERTS, FAST_BURN, duration, evaluate
from flask_appmetrics.slo.objectives import Objective
from flask_appmetrics.slo.windows import RING_BUCKETS, SloWindow
from tests.support.clock import FakeClock

DAY = 86_400.0
PERIOD = 30 * DAY


def record(window: SloWindow, good: int, bad: int) -> None:
    for _ in range(good):
        window.record(False)
    for _ in range(bad):
        window.record(True)


def test_windows_count_exactly_and_forget_on_time() -> None:
    clock = FakeClock(start=0.0)
    window = SloWindow(PERIOD, clock=clock)
    record(window, good=90, bad=10)
    for seconds in (300, 3600, 6 * 3600, 3 * DAY, PERIOD):
        counts = window.counts(seconds)
        assert (counts.requests, counts.bad, counts.bad_ratio) == (100, 10, 0.1)
    clock.advance(301)  # out of the 5 minutes (15 s buckets), in every longer window
    assert window.counts(300).requests == 0
    assert window.counts(3600).requests == 100
    clock.advance(3600)
    assert window.counts(3600).requests == 0
    assert window.counts(6 * 3600).requests == 100
    clock.advance(3 * DAY)
    assert window.counts(3 * DAY).requests == 0
    assert window.counts(PERIOD).requests == 100
    clock.advance(PERIOD)
    assert window.counts(PERIOD).requests == 0


def test_memory_is_fixed_whatever_the_traffic() -> None:
    clock = FakeClock(start=0.0)
    window = SloWindow(PERIOD, clock=clock)
    sizes = [(len(r.stamps), len(r.requests), len(r.bad)) for r in window.rings]
    for _ in range(5000):
        window.record(False)
        clock.advance(37.0)  # two days of requests, 37 s apart
    assert [(len(r.stamps), len(r.requests), len(r.bad)) for r in window.rings] == sizes
    assert sizes == [(RING_BUCKETS,) * 3] * 3
    # Each window holds what its span holds, at its ring's resolution.
    assert window.counts(3600).requests in (97, 98)
    assert window.counts(PERIOD).requests == 5000


@pytest.mark.parametrize(
    ("days", "fast", "slow", "steady"), [(30, 14.4, 6.0, 1.0), (7, 3.36, 1.4, 0.233333333)]
)
def test_thresholds_follow_the_workbook_and_scale_with_the_period(
    days: float, fast: float, slow: float, steady: float
) -> None:
    period = days * DAY
    assert [a.threshold(period) for a in BURN_ALERTS] == [fast, slow, steady]
    assert [(duration(a.long_seconds), duration(a.short_seconds)) for a in BURN_ALERTS] == [
        ("1h", "5m"), ("6h", "30m"), ("3d", "6h"),
    ]  # fmt: skip


def burning_after(
    bad_share: float, *, min_requests: int = 20, requests: int = 1000
) -> tuple[tuple[str, ...], bool]:
    clock = FakeClock(start=0.0)
    window = SloWindow(PERIOD, clock=clock)
    bad = round(requests * bad_share)
    record(window, requests - bad, bad)
    status = evaluate(
        Objective("api", "availability", 0.999),
        window,
        period_seconds=PERIOD,
        observed_seconds=60.0,
        min_requests=min_requests,
    )
    return status.burning, status.fast_burn


def test_which_alerts_burn_at_which_rate() -> None:
    assert burning_after(0.0005) == ((), False)  # 0.5x: within budget
    assert burning_after(0.003) == (("steady",), False)  # 3x
    assert burning_after(0.010) == (("slow", "steady"), False)  # 10x
    assert burning_after(0.020) == (("fast", "slow", "steady"), True)  # 20x
    # Too few requests to judge by: the fast burn shows, but does not count.
    assert burning_after(0.5, requests=10) == (("fast", "slow", "steady"), False)
    assert burning_after(0.5, requests=10, min_requests=0) == (("fast", "slow", "steady"), True)


def test_a_fast_burn_that_stopped_is_no_longer_one() -> None:
    clock = FakeClock(start=0.0)
    window = SloWindow(PERIOD, clock=clock)
    record(window, 50, 50)
    clock.advance(600)  # the 5 minutes are clean again, the hour is not
    record(window, 100, 0)
    status = evaluate(
        Objective("api", "availability", 0.99),
        window,
        period_seconds=PERIOD,
        observed_seconds=660.0,
        min_requests=20,
    )
    assert status.burn_rate(FAST_BURN.long_seconds) == pytest.approx(50 / 200 / 0.01)
    assert status.burn_rate(FAST_BURN.short_seconds) == 0.0
    assert "fast" not in status.burning
    assert not status.fast_burn
    assert status.budget_remaining == pytest.approx(1 - (50 / 200) / 0.01)
    body = status.as_dict()
    assert body["status"] == "healthy"
    assert list(body["burn_rates"]) == ["5m", "30m", "1h", "6h", "3d"]
    assert body["window_days"] == 30
