"""What real headless Chromium renders of the status page.

The tests serve a real app over HTTP on a free local port and run Debian's ``chromium``
against it: ``--dump-dom`` shows the DOM after the script ran (and after a refresh),
``--screenshot`` gives a PNG whose pixels the tests inspect (status colour in the banner,
latency line and error bars in the plot).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import BaseWSGIServer, make_server

from flask_appmetrics import FlaskMetrics, record_circuit_breaker_event
from flask_appmetrics.web.status_page import ERROR_COLOUR, LATENCY_COLOUR, STATUS_COLOURS
from tests.support.png import read_png
from tests.support.status_apps import drive, make_app

chromium = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    chromium is None, reason="chromium not installed (scripts/system-deps.sh installs it)"
)


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app) -> base URL``: the app over real HTTP on a free port, stopped after."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_chromium(tmp_path: Path, url: str, *args: str) -> str:
    assert chromium is not None
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1000,800",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_status_checks_and_plot(tmp_path: Path, serve: Any) -> None:
    app = make_app(failing_check=True)
    drive(app, ok=30, failed=6)
    base = serve(app)
    dom = run_chromium(tmp_path, f"{base}/status", "--dump-dom")
    assert 'data-rendered="yes"' in dom  # the script ran
    assert 'id="banner" class="status-degraded"' in dom
    assert dom.count('<tr class="check">') == 2
    assert "cache unreachable" in dom or "ConnectionError" in dom
    assert 'id="latency-line"' in dom
    assert dom.count('class="error-bar"') >= 1

    shot = tmp_path / "status.png"
    run_chromium(tmp_path, f"{base}/status", f"--screenshot={shot}")
    image = read_png(shot.read_bytes())
    assert (image.width, image.height) == (1000, 800)
    banner = (30, 20, 970, 110)
    banner_pixels = (banner[2] - banner[0]) * (banner[3] - banner[1])
    degraded = hex_rgb(STATUS_COLOURS["degraded"])
    # Most of the banner is the status colour (text covers the rest).
    assert image.count(degraded, banner, tol=12) > banner_pixels * 0.7
    plot = (20, 240, 980, 490)
    assert image.count(hex_rgb(LATENCY_COLOUR), plot, tol=40) > 500
    assert image.count(hex_rgb(ERROR_COLOUR), plot, tol=40) > 200
    for status in ("healthy", "unhealthy"):
        assert image.count(hex_rgb(STATUS_COLOURS[status]), banner, tol=12) == 0


@pytest.mark.slow
@needs_chromium
def test_chromium_page_at_health_path_turns_red_on_refresh(tmp_path: Path, serve: Any) -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    calls = {"n": 0}

    @metrics.health_check("database")
    def database() -> bool:
        # Passes for the server-rendered snapshot, fails for every refresh after it.
        calls["n"] += 1
        return calls["n"] == 1

    app = Flask("status_test")
    app.config["APPMETRICS_STATUS_REFRESH_SECONDS"] = 1.0
    metrics.init_app(app)
    base = serve(app)
    # Chromium asks for text/html first, so /api/health answers with the page.
    dom = run_chromium(tmp_path, f"{base}/api/health", "--dump-dom", "--virtual-time-budget=5000")
    assert 'data-rendered="yes"' in dom
    assert 'class="status-unhealthy"' in dom
    assert "refreshed " in dom  # drawn by a refresh, not from the server-rendered snapshot
    assert calls["n"] >= 2

    calls["n"] = 1  # every evaluation from now on fails: the screenshot shows red
    client = app.test_client()
    assert client.get("/status").status_code == 503  # the verdict, as /api/health gives it
    assert client.get("/status?format=json").status_code == 503
    shot = tmp_path / "unhealthy.png"
    run_chromium(tmp_path, f"{base}/api/health", f"--screenshot={shot}")
    image = read_png(shot.read_bytes())
    red = hex_rgb(STATUS_COLOURS["unhealthy"])
    assert image.count(red, (30, 20, 970, 110), tol=12) > 940 * 90 * 0.7


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_hostile_names_as_text(tmp_path: Path, serve: Any) -> None:
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
    dom = run_chromium(tmp_path, f"{serve(app)}/status", "--dump-dom")
    assert 'data-rendered="yes"' in dom  # the page's own script ran to its end
    assert 'data-pwned="yes"' not in dom  # the attribute the injected script would set
    assert dom.count('<tr class="check">') == 2
    # Shown as text, escaped by the DOM serialiser.
    assert "db&lt;!--&lt;script&gt;" in dom
    assert "circuit breaker svc&lt;!--&lt;script&gt;" in dom
