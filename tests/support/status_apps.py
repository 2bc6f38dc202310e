"""The small app the status page tests serve: a passing check, optionally a failing one,
and ``/work`` (200) and ``/fail`` (500) routes that :func:`drive` calls; traffic spread
over time on a clock the test moves, and a probe page that measures the status page in a
browser."""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.clock import FakeClock


def make_app(config: dict[str, Any] | None = None, *, failing_check: bool = False) -> Flask:
    metrics = FlaskMetrics(registry=CollectorRegistry())

    @metrics.health_check("database", critical=False)
    def database() -> bool:
        return True

    if failing_check:

        @metrics.health_check("cache", critical=False)
        def cache() -> bool:
            raise ConnectionError("cache unreachable")

    app = Flask("status_test")
    app.config.update(config or {})
    metrics.init_app(app)

    @app.get("/work")
    def work() -> str:
        return "done"

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "failed", 500

    return app


def drive(app: Flask, ok: int, failed: int) -> None:
    client = app.test_client()
    for _ in range(ok):
        assert client.get("/work").status_code == 200
    for _ in range(failed):
        assert client.get("/fail").status_code == 500


def page_clock(app: Flask) -> FakeClock:
    """Put the status page's traffic readings of *app* on a clock the test moves."""
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.status_page is not None
    clock = FakeClock(1_767_225_600.0)
    state.status_page.history.clock = clock
    return clock


def drive_over_time(app: Flask, clock: FakeClock, phases: list[tuple[int, int]]) -> None:
    """For each ``(ok, failed)`` phase: that traffic, then 30 s later the page's data is
    read (as an open page does), so every phase is one interval of the charts."""
    client = app.test_client()
    client.get("/status?format=json").close()
    for ok, failed in phases:
        drive(app, ok=ok, failed=failed)
        clock.advance(30.0)
        client.get("/status?format=json").close()


#: A page of the test app's own that loads the status page in a frame of the given size
#: and reports what a script can measure there (the status page itself carries no test
#: code): element boxes, whether the document is wider than the frame, and, after more
#: traffic and the page's own refreshes, whether it updated in place.
PROBE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>body { margin: 0 } iframe { border: 0; display: block }</style></head>
<body><iframe id="frame" src="/status"></iframe><pre id="result"></pre>
<script>
var params = new URLSearchParams(location.search);
var frame = document.getElementById("frame");
frame.style.width = params.get("w") + "px";
frame.style.height = params.get("h") + "px";
function box(doc, selector) {
  var node = doc.querySelector(selector);
  if (!node) { return null; }
  var r = node.getBoundingClientRect();
  return [Math.round(r.left), Math.round(r.top), Math.round(r.right), Math.round(r.bottom)];
}
frame.addEventListener("load", function () {
  var win = frame.contentWindow, doc = frame.contentDocument, out = {};
  out.scrollWidth = doc.documentElement.scrollWidth;
  out.clientWidth = doc.documentElement.clientWidth;
  out.boxes = {};
  ["#banner", "#chart-rps", "#chart-errors", "#chart-latency", "#endpoints-card",
   ".tile:nth-child(1)", ".tile:nth-child(2)", ".tile:nth-child(3)"].forEach(function (s) {
    out.boxes[s] = box(doc, s);
  });
  out.rendered = doc.body.getAttribute("data-rendered");
  out.bannerClass = doc.getElementById("banner").className;
  out.series = doc.querySelectorAll("path.series").length;
  out.rows = {};
  ["endpoints", "checks", "breakers"].forEach(function (id) {
    out.rows[id] = Array.prototype.map.call(doc.querySelectorAll("#" + id + " tr"), function (tr) {
      return [tr.getAttribute("data-key"), tr.textContent];
    });
  });
  var row = doc.querySelector('#endpoints tr[data-key="/work"]');
  out.rowBefore = row ? row.textContent : null;
  win.probeMarker = "kept";
  var traffic = parseInt(params.get("traffic") || "0", 10), sent = [];
  for (var i = 0; i < traffic; i++) { sent.push(fetch("/work")); }
  Promise.all(sent).then(function () {
    setTimeout(function () {
      out.marker = win.probeMarker || null;
      out.rowConnected = row ? row.isConnected : null;
      out.rowAfter = row ? row.textContent : null;
      out.updated = doc.getElementById("updated").textContent;
      document.getElementById("result").textContent = JSON.stringify(out);
    }, parseInt(params.get("wait") || "0", 10));
  });
});
</script></body></html>
"""


def add_probe(app: Flask) -> None:
    """Serve :data:`PROBE` at ``/probe?w=&h=&traffic=&wait=`` (make the app with
    ``APPMETRICS_EXCLUDE_PATHS=["/probe"]``, so that the probe is no traffic of its own)."""

    @app.get("/probe")
    def probe() -> str:
        return PROBE
