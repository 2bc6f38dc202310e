"""The status page: content negotiation, its JSON, escaping and settings.

What real headless Chromium renders is in ``tests/system/test_status_page_browser.py``.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_appmetrics import ConfigurationError, FlaskMetrics, record_circuit_breaker_event
from flask_appmetrics.health.windows import BucketedCounter, LatencyRing
from tests.support.status_apps import drive, make_app

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# -- the windows' read methods ------------------------------------------------------------


def test_latency_ring_recent_is_oldest_first_and_bounded() -> None:
    ring = LatencyRing(3)
    assert ring.recent() == ()
    for value in (0.1, 0.2, 0.3, 0.4):
        ring.record(value)
    assert ring.recent() == (0.2, 0.3, 0.4)


def test_bucketed_counter_series_per_slot_and_expiry() -> None:
    now = [100.0]
    counter = BucketedCounter(10.0, buckets=5, clock=lambda: now[0])
    counter.record(error=False)
    now[0] = 104.5
    counter.record(error=True)
    counter.record(error=False)
    slots = counter.series()
    assert len(slots) == 5
    assert [(s.requests, s.errors) for s in slots] == [(0, 0), (0, 0), (1, 0), (0, 0), (2, 1)]
    assert all(s.window_seconds == 2.0 for s in slots)
    assert sum(s.requests for s in slots) == counter.counts().requests
    now[0] = 111.0  # the first request (t=100) left the window, the others did not
    assert [(s.requests, s.errors) for s in counter.series()] == [
        (0, 0),
        (2, 1),
        (0, 0),
        (0, 0),
        (0, 0),
    ]


# -- negotiation and JSON ------------------------------------------------------------------


def test_status_json_carries_report_and_window_samples() -> None:
    app = make_app({"APPMETRICS_HEALTH_MIN_REQUESTS": 10})
    drive(app, ok=7, failed=3)
    client = app.test_client()
    body = client.get("/status?format=json").get_json()
    assert body["recent_errors_5min"] == 3
    assert body["recent_requests_5min"] == 10
    assert body["status"] == "degraded"
    series = body["series"]
    assert len(series["latency_ms"]) == 10
    assert sum(b["errors"] for b in series["buckets"]) == 3
    assert sum(b["requests"] for b in series["buckets"]) == 10
    assert series["window_seconds"] == pytest.approx(300.0)
    # The page and its data are not requests of the app: the windows did not move.
    client.get("/status")
    again = client.get("/status", headers={"Accept": "application/json"}).get_json()
    assert again["recent_requests_5min"] == 10


def test_health_endpoint_gives_browsers_the_page_and_clients_json() -> None:
    client = make_app().test_client()
    page = client.get("/api/health", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Cache-Control"] == "no-store"
    assert "Accept" in page.headers["Vary"]
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5", None):
        headers = {"Accept": accept} if accept else {}
        response = client.get("/api/health", headers=headers)
        assert response.mimetype == "application/json", accept
        assert response.get_json()["status"] == "healthy"
    ietf = client.get("/api/health", headers={"Accept": "application/health+json"})
    assert ietf.mimetype == "application/health+json"


def test_status_page_is_self_contained() -> None:
    html = make_app().test_client().get("/status").get_data(as_text=True)
    assert "<script src" not in html
    # One link: an empty icon, so that the browser does not ask for /favicon.ico.
    assert re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}  # an XML namespace, never fetched
    assert 'data-status="healthy"' in html  # server-rendered, readable without JavaScript


def test_status_path_configurable_and_can_be_turned_off() -> None:
    moved = make_app({"APPMETRICS_STATUS_PATH": "/ops/status"}).test_client()
    assert moved.get("/status").status_code == 404
    assert moved.get("/ops/status").mimetype == "text/html"
    off_app = make_app({"APPMETRICS_STATUS_PATH": None})
    assert off_app.config["APPMETRICS_STATUS_PATH"] is None
    off = off_app.test_client()
    assert off.get("/status").status_code == 404
    # Without the page, browsers get the JSON like everybody else.
    assert off.get("/api/health", headers={"Accept": BROWSER_ACCEPT}).mimetype == (
        "application/json"
    )


def test_status_settings_are_validated_and_visible() -> None:
    app = make_app()
    assert app.config["APPMETRICS_STATUS_PATH"] == "/status"
    assert app.config["APPMETRICS_STATUS_REFRESH_SECONDS"] == 5.0
    with pytest.raises(ConfigurationError, match="APPMETRICS_STATUS_REFRESH_SECONDS"):
        make_app({"APPMETRICS_STATUS_REFRESH_SECONDS": 0})
    with pytest.raises(ConfigurationError, match="APPMETRICS_STATUS_PATH"):
        make_app({"APPMETRICS_STATUS_PATH": "status"})


def test_status_page_follows_health_auth() -> None:
    token = "s3cret-token-0123456789"
    client = make_app({"APPMETRICS_AUTH_TOKEN": token}).test_client()
    refused = client.get("/status")
    assert refused.status_code == 401
    assert b"recent_errors" not in refused.data
    assert client.get("/status?format=json").status_code == 401
    # A browser without credentials gets the public JSON summary at /api/health, not the page.
    summary = client.get("/api/health", headers={"Accept": BROWSER_ACCEPT})
    assert summary.mimetype == "application/json"
    assert set(summary.get_json()) <= {
        "status",
        "recent_errors_5min",
        "avg_response_time_ms",
        "concurrent_users",
    }
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/status", headers=bearer).mimetype == "text/html"
    page = client.get("/api/health", headers={"Accept": BROWSER_ACCEPT, **bearer})
    assert page.mimetype == "text/html"
    public = make_app({"APPMETRICS_AUTH_TOKEN": token, "APPMETRICS_AUTH_HEALTH": "none"})
    assert public.test_client().get("/status").status_code == 200


def test_embedded_snapshot_cannot_close_the_script_tag() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.health_check("</script><b>x", critical=False)
    def hostile() -> bool:
        return False

    app = Flask("status_test")
    metrics.init_app(app)
    html = app.test_client().get("/status").get_data(as_text=True)
    assert "</script><b>" not in html


# -- every value escaped for its context ------------------------------------------------------

HOSTILE = "<!--<script>alert(1)</script>"


class PageParser(HTMLParser):
    """What a browser's tokenizer sees: elements, script texts, the title text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.title = ""
        self._open: str | None = None
        self._attrs: dict[str, str | None] = {}
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("script", "title"):
            self._open, self._attrs, self._text = tag, dict(attrs), []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open == "script":
            self.scripts.append((self._attrs, "".join(self._text)))
        elif tag == self._open == "title":
            self.title = "".join(self._text)
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def _get_page(app: Flask, path: str = "/status", **headers: str) -> str:
    response = app.test_client().get(path, headers=headers)
    try:
        assert response.status_code in (200, 503)
        assert response.mimetype == "text/html"
        return response.get_data(as_text=True)
    finally:
        response.close()


def _assert_two_inert_scripts(page: PageParser) -> None:
    # Ours only: the JSON snapshot and the inline program; no element injected.
    assert len(page.scripts) == 2
    assert [attrs for attrs, _ in page.scripts] == [
        {"id": "snapshot", "type": "application/json"},
        {},
    ]
    for _, text in page.scripts:
        # Nothing that could end the element or switch the tokenizer into the
        # "script data escaped" states (which is what <!-- followed by <script does).
        assert "</" not in text
        assert "<!--" not in text
        assert "<script" not in text.lower()


def test_forwarded_prefix_cannot_inject_a_script_behind_proxyfix() -> None:
    app = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_prefix=1)  # type: ignore[method-assign]
    prefix = "/x</script><script>alert(1)</script>"
    html = _get_page(app, "/status", **{"X-Forwarded-Prefix": prefix})
    page = parse(html)
    _assert_two_inert_scripts(page)
    assert page.tags.count("script") == 2
    # The page still polls the right URL: the prefix, escaped for the script, intact.
    program = page.scripts[1][1]
    literal = re.search(r"var DATA_URL = (\"[^\"]*\")", program)
    assert literal is not None
    assert json.loads(literal.group(1)) == f"{prefix}/status?format=json"


def test_hostile_check_and_breaker_names_are_data_not_markup() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.health_check(f"db{HOSTILE}", critical=False)
    def hostile() -> bool:
        return False

    app = Flask("status_test")
    metrics.init_app(app)
    with app.app_context():
        record_circuit_breaker_event(f"svc{HOSTILE}", "state", state="open")
    page = parse(_get_page(app))
    _assert_two_inert_scripts(page)
    # The snapshot is the data, exactly: the names survive as text.
    snapshot = json.loads(page.scripts[0][1])
    assert f"db{HOSTILE}" in snapshot["checks"]
    assert snapshot["circuit_breakers"] == {f"svc{HOSTILE}": "open"}
    assert page.tags.count("script") == 2


def test_app_name_is_escaped_in_title_and_footer() -> None:
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("<b>shop</b>")
    metrics.init_app(app)
    html = _get_page(app)
    page = parse(html)
    assert page.title == "<b>shop</b>: healthy"
    assert "<title>&lt;b&gt;shop&lt;/b&gt;: healthy</title>" in html
    # The only <b> elements are the page's own: as many as for a plain name.
    plain_app = Flask("shop")
    FlaskMetrics(registry=CollectorRegistry()).init_app(plain_app)
    assert page.tags.count("b") == parse(_get_page(plain_app)).tags.count("b")
    assert "&lt;b&gt;shop&lt;/b&gt; &middot;" in html


def test_status_template_ships_with_the_package() -> None:
    from importlib.resources import files

    templates = files("flask_appmetrics.web").joinpath("templates", "appmetrics")
    assert templates.joinpath("status.html").is_file()
    layout = templates.joinpath("status_layout.html")
    assert "{{ snapshot|tojson }}" in layout.read_text(encoding="utf-8")


def test_an_apps_own_status_template_does_not_replace_ours(tmp_path: Path) -> None:
    (tmp_path / "status.html").write_text("the app's own page")
    metrics = FlaskMetrics(registry=CollectorRegistry())
    app = Flask("status_test", template_folder=str(tmp_path))
    metrics.init_app(app)
    html = _get_page(app)
    assert "the app's own page" not in html
    assert 'data-status="healthy"' in html
