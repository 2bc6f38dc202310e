"""What real headless Chromium renders of the status page.

The tests serve a real app over HTTP on a free local port and run Debian's ``chromium``
against it: ``--dump-dom`` shows the DOM after the script ran (and after refreshes),
``--screenshot`` gives a PNG whose pixels the tests decode and inspect (the status colour
in the banner, each chart's series drawn in its colour, a dark background in dark mode),
and a probe page of the test app loads the status page in a frame to measure it (element
boxes, overflow on a phone, updates in place).
"""

from __future__ import annotations

import html
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort
from prometheus_client import CollectorRegistry
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_appmetrics import FlaskMetrics, record_circuit_breaker_event
from flask_appmetrics.web.status_page import SERIES_COLOURS, STATUS_COLOURS
from tests.support.clock import FakeClock
from tests.support.png import Image, read_png
from tests.support.status_apps import add_probe, drive_over_time, make_app, page_clock
from tests.support.status_screens import (
    CHROMIUM,
    DOCS_SIZE,
    drive_example,
    example_app,
    run_chromium,
)
from tests.support.status_screens import serving as serving_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (scripts/system-deps.sh installs it)"
    ),
]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "status-page.png"
#: Traffic of six 10-second intervals: (successes, failures) each; errors in the middle.
PHASES = [(20, 0), (30, 0), (25, 5), (10, 10), (30, 2), (40, 0)]

Box = tuple[int, int, int, int]


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app) -> base URL``: the app over real HTTP on a free port, stopped after."""
    stack: list[Any] = []

    def start(app: Flask) -> str:
        context = serving_app(app)
        stack.append(context)
        return str(context.__enter__())

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def probe(tmp_path: Path, base: str, size: tuple[int, int], **params: int) -> dict[str, Any]:
    """What the probe page measured of ``/status`` in a frame of *size*."""
    query = "&".join(f"{k}={v}" for k, v in {"w": size[0], "h": size[1], **params}.items())
    dom = run_chromium(
        tmp_path / "probe-profile",
        f"{base}/probe?{query}",
        "--dump-dom",
        "--virtual-time-budget=10000",
        size=size,
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-2000:]
    assert found.group(1), dom[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def screenshot(tmp_path: Path, url: str, size: tuple[int, int], *args: str) -> Image:
    shot = tmp_path / f"shot-{size[0]}x{size[1]}{len(args)}.png"
    run_chromium(tmp_path / "shot-profile", url, f"--screenshot={shot}", *args, size=size)
    image = read_png(shot.read_bytes())
    assert (image.width, image.height) == size
    return image


def area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def inner(box: Box, margin: int = 4) -> Box:
    return box[0] + margin, box[1] + margin, box[2] - margin, box[3] - margin


def luminance(pixel: tuple[int, int, int]) -> float:
    r, g, b = pixel
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def charted_app() -> Flask:
    app = make_app(
        {"APPMETRICS_EXCLUDE_PATHS": ["/probe"], "APPMETRICS_STATUS_REFRESH_SECONDS": 1.0},
        failing_check=True,
    )
    add_probe(app)
    drive_over_time(app, page_clock(app), PHASES)
    return app


def assert_charts_drawn(image: Image, boxes: dict[str, Box]) -> None:
    """Each chart holds its series in its colour, and no other chart's."""
    charts = {
        "#chart-rps": ["rps"],
        "#chart-errors": ["errors"],
        "#chart-latency": ["p50", "p95"],
    }
    names = list(SERIES_COLOURS)
    for selector, series in charts.items():
        found = image.counts(
            [hex_rgb(SERIES_COLOURS[n]) for n in names], inner(boxes[selector]), 30
        )
        for name, count in zip(names, found, strict=True):
            if name in series:
                assert count > 150, (selector, name, count)
            else:
                assert count < 20, (selector, name, count)


def test_desktop_page_light_and_dark(tmp_path: Path, serve: Any) -> None:
    base = serve(charted_app())
    measured = probe(tmp_path, base, (1000, 800))
    assert measured["rendered"] == "yes"  # the script ran to its end
    assert measured["bannerClass"] == "status-degraded"
    assert measured["series"] == 4  # rps, errors, p50, p95
    checks = dict(measured["rows"]["checks"])
    assert set(checks) == {"database", "cache"}
    assert "ConnectionError" in checks["cache"]
    assert [key for key, _ in measured["rows"]["endpoints"]] == ["/work", "/fail"]
    boxes = {k: tuple(v) for k, v in measured["boxes"].items()}
    # Three charts side by side on a desktop: one row, left to right.
    charts = [boxes[s] for s in ("#chart-rps", "#chart-errors", "#chart-latency")]
    assert max(c[1] for c in charts) < min(c[3] for c in charts)
    assert charts[0][2] <= charts[1][0]
    assert charts[1][2] <= charts[2][0]

    banner = inner(boxes["#banner"], 2)
    card = inner(boxes["#endpoints-card"])
    degraded = hex_rgb(STATUS_COLOURS["degraded"])
    for dark in (False, True):
        image = screenshot(tmp_path, f"{base}/status", (1000, 800), *(["--force-dark-mode"] * dark))
        # Most of the banner is the status colour (text covers the rest), in either mode.
        assert image.count(degraded, banner, tol=12) > area(banner) * 0.7
        for status in ("healthy", "unhealthy"):
            assert image.count(hex_rgb(STATUS_COLOURS[status]), banner, tol=12) == 0
        assert_charts_drawn(image, boxes)
        background = luminance(image.pixel(2, 790))
        card_background = luminance(image.pixel(card[0] + 2, card[1] + 2))
        # Text in the table: dark on light, or light on dark.
        dark_text, light_text = image.counts([(31, 35, 40), (230, 233, 237)], card, 12)
        if dark:
            assert background < 40
            assert card_background < 50
            assert light_text > 200
        else:
            assert background > 200
            assert card_background > 230
            assert dark_text > 200


def test_phone_width_is_one_column_without_overflow(tmp_path: Path, serve: Any) -> None:
    app = charted_app()
    base = serve(app)
    size = (390, 1600)  # a phone's width; tall enough to hold the charts in one shot
    measured = probe(tmp_path, base, size)
    assert measured["scrollWidth"] <= measured["clientWidth"] == 390
    boxes = {k: tuple(v) for k, v in measured["boxes"].items()}
    # Tiles two by two, charts one under the other at (nearly) the full width.
    first, second, third = (boxes[f".tile:nth-child({i})"] for i in (1, 2, 3))
    assert first[1] == second[1] < third[1]
    charts = [boxes[s] for s in ("#chart-rps", "#chart-errors", "#chart-latency")]
    assert charts[0][3] <= charts[1][1]
    assert charts[1][3] <= charts[2][1]
    assert all(chart[2] - chart[0] > 300 for chart in charts)
    image = screenshot(tmp_path, f"{base}/status", size)
    assert_charts_drawn(image, boxes)


def test_refreshes_update_the_page_in_place(tmp_path: Path, serve: Any) -> None:
    app = charted_app()
    base = serve(app)
    # More traffic from the probe, then two and a half refresh periods.
    measured = probe(tmp_path, base, (1000, 800), traffic=15, wait=2500)
    assert measured["updated"].startswith("refreshed ")  # drawn from fetched data
    assert measured["marker"] == "kept"  # the same document: no reload
    assert measured["rowConnected"] is True  # the same row element, its text changed
    assert measured["rowBefore"] != measured["rowAfter"]
    assert "155" in measured["rowBefore"]
    assert "170" in measured["rowAfter"]  # the /work requests, the probe's included


def test_example_app_page(tmp_path: Path, serve: Any) -> None:
    """The example backend after five minutes of traffic with an incident: the page the
    docs show (``python -m tests.support.status_screens`` writes that screenshot)."""
    clock = FakeClock(1_767_225_600.0)
    app = example_app(clock)
    drive_example(app, clock)
    base = serve(app)
    dom = run_chromium(tmp_path / "dom-profile", f"{base}/status", "--dump-dom")
    # The LLM circuit breaker opened in the incident: degraded, and said why.
    assert 'class="status-degraded"' in dom
    assert "circuit breaker 'gemini' is open" in dom
    for section in ("llm-card", "quota-card", "caches-card", "breakers-card"):
        assert re.search(rf'id="{section}"(?! hidden)', dom), section
    assert 'data-key="/api/generate"' in dom
    assert 'data-key="gemini-2.5-flash"' in dom
    image = screenshot(tmp_path, f"{base}/status", (1200, 1000))
    assert image.count(hex_rgb(STATUS_COLOURS["degraded"]), (60, 20, 1140, 80), tol=12) > 40_000
    charts = image.counts([hex_rgb(c) for c in SERIES_COLOURS.values()], (40, 190, 1160, 400), 30)
    assert all(count > 150 for count in charts), charts
    # The docs keep one: a screenshot of this page, at this size.
    docs = DOCS_SCREENSHOT.read_bytes()
    assert docs[12:16] == b"IHDR"
    assert struct.unpack(">II", docs[16:24]) == DOCS_SIZE


def test_page_at_health_path_turns_red_on_refresh(tmp_path: Path, serve: Any) -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    calls = {"n": 0}

    @metrics.health_check("database", cache_seconds=0)
    def database() -> bool:
        # Passes for the server-rendered snapshot, fails for every refresh after it.
        calls["n"] += 1
        return calls["n"] == 1

    app = Flask("status_test")
    app.config["APPMETRICS_STATUS_REFRESH_SECONDS"] = 1.0
    metrics.init_app(app)
    base = serve(app)
    # Chromium asks for text/html first, so /api/health answers with the page.
    dom = run_chromium(
        tmp_path / "profile", f"{base}/api/health", "--dump-dom", "--virtual-time-budget=5000"
    )
    assert 'data-rendered="yes"' in dom
    assert 'class="status-unhealthy"' in dom
    assert "refreshed " in dom  # drawn by a refresh, not from the server-rendered snapshot
    assert calls["n"] >= 2

    calls["n"] = 1  # every evaluation from now on fails: the screenshot shows red
    client = app.test_client()
    assert client.get("/status").status_code == 503  # the verdict, as /api/health gives it
    assert client.get("/status?format=json").status_code == 503
    image = screenshot(tmp_path, f"{base}/api/health", (1000, 800))
    red = hex_rgb(STATUS_COLOURS["unhealthy"])
    assert image.count(red, (40, 20, 960, 70), tol=12) > 900 * 50 * 0.7


def test_hostile_names_render_as_text(tmp_path: Path, serve: Any) -> None:
    pwn = '<script>document.documentElement.setAttribute("data-pwned", "yes")</script>'
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.health_check(f"db<!--{pwn}", critical=False)
    def hostile() -> bool:
        return False

    app = Flask("status_test")
    metrics.init_app(app)
    with app.app_context():
        record_circuit_breaker_event(f"svc<!--<script>{pwn}", "state", state="open")
    proxied = ProxyFix(app.wsgi_app, x_prefix=1)

    def forwarded(environ: dict[str, Any], start_response: Any) -> Any:
        # What a client can send through a proxy that passes X-Forwarded-Prefix on.
        environ["HTTP_X_FORWARDED_PREFIX"] = f"/x</script>{pwn}"
        return proxied(environ, start_response)

    app.wsgi_app = forwarded  # type: ignore[method-assign]
    dom = run_chromium(tmp_path / "profile", f"{serve(app)}/status", "--dump-dom")
    assert 'data-rendered="yes"' in dom  # the page's own script ran to its end
    assert 'data-pwned="yes"' not in dom  # the attribute the injected script would set
    assert dom.count('<tr class="check"') == 1
    assert dom.count('<tr class="breaker"') == 1
    # Shown as text, escaped by the DOM serialiser.
    assert ">db&lt;!--&lt;script&gt;" in dom
    assert ">svc&lt;!--&lt;script&gt;" in dom


def test_objectives_pass_burn_fast_or_have_their_budget_spent(tmp_path: Path, serve: Any) -> None:
    """A budget spent at a slow burn is no fast burn (the objective stays healthy), and the
    page says the budget is spent instead of showing the objective as passing."""
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("status_test")
    metrics.init_app(app)

    @app.get("/pay/<int:fail>")
    @metrics.slo(availability=0.999, name="checkout")
    def pay(fail: int) -> str:
        if fail:
            abort(500)
        return "paid"

    @app.get("/items")
    @metrics.slo(availability=0.999, name="browse")
    def items() -> str:
        return "items"

    @app.get("/search/<int:fail>")
    @metrics.slo(availability=0.999, name="search")
    def search(fail: int) -> str:
        if fail:
            abort(500)
        return "found"

    client = app.test_client()
    for _ in range(499):
        assert client.get("/pay/0").status_code == 200
    assert client.get("/pay/1").status_code == 500  # 0.2 % bad: twice the 0.1 % allowed
    for _ in range(100):
        assert client.get("/items").status_code == 200
    for n in range(200):
        assert client.get(f"/search/{int(n % 10 == 0)}").status_code in (200, 500)
    report = client.get("/status?format=json").get_json()
    by_name = {o["name"]: o for o in report["objectives"]}
    assert by_name["checkout"]["status"] == "healthy"  # burning at 2x: no fast burn
    assert by_name["checkout"]["budget_remaining"] == pytest.approx(-1.0)
    assert by_name["search"]["status"] == "degraded"  # 10 % bad: a burn of 100x
    dom = run_chromium(tmp_path / "profile", f"{serve(app)}/status", "--dump-dom")
    assert 'data-rendered="yes"' in dom
    rows = {
        key: re.findall(r"<td(?: class=\"([^\"]*)\")?>([^<]*)</td>", row)
        for key, row in re.findall(r'<tr class="objective" data-key="([^"]+)">(.*?)</tr>', dom)
    }
    assert set(rows) == {"checkout", "browse", "search"}
    assert rows["checkout"][1] == ("warn", "budget spent")
    assert rows["checkout"][3][1] == "-100.0% of 30 d"
    assert rows["browse"][1] == ("pass", "pass")
    assert rows["search"][1] == ("warn", "fast burn")
