"""The status page's HTML: one self-contained document (inline CSS, JS and SVG, no CDN).

The server fills in the first snapshot (so the page shows the status even before, or
without, JavaScript); the script draws the plot from it and then polls the JSON snapshot
every few seconds. Colours are fixed so that a screenshot test can find them.
"""

from __future__ import annotations

from string import Template

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

PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #212121; background: #fafafa; }
  main { max-width: 960px; margin: 0 auto; padding: 16px; }
  #banner { color: #fff; padding: 18px 22px; border-radius: 8px; background: $unknown_colour; }
  #banner h1 { margin: 0; font-size: 28px; text-transform: capitalize; }
  #banner p { margin: 4px 0 0; opacity: .9; }
  .status-healthy { background: $healthy_colour !important; }
  .status-degraded { background: $degraded_colour !important; color: #212121 !important; }
  .status-unhealthy { background: $unhealthy_colour !important; }
  .grid { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; margin: 14px 0; }
  .tile { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 8px 12px; }
  .tile b { display: block; font-size: 20px; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; }
  .pass { color: #2e7d32; } .fail { color: #c62828; } .warn { color: #ef6c00; }
  #plot { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; width: 100%; }
  h2 { font-size: 17px; margin: 18px 0 6px; }
  footer { color: #757575; font-size: 12px; margin-top: 10px; }
</style>
</head>
<body>
<main>
  <div id="banner" class="status-$status" data-status="$status">
    <h1 id="status-text">$status</h1>
    <p id="reasons">$reasons</p>
  </div>
  <div class="grid">
    <div class="tile">Requests (window)<b id="requests">-</b></div>
    <div class="tile">Errors (window)<b id="errors">-</b></div>
    <div class="tile">Avg / p95 latency<b id="latency">-</b></div>
    <div class="tile">Concurrent users<b id="users">-</b></div>
  </div>
  <h2>Recent requests: latency (line, ms) and 5xx errors (bars)</h2>
  <svg id="plot" viewBox="0 0 900 220" preserveAspectRatio="none" role="img"
       aria-label="recent latency and errors"></svg>
  <h2>Checks</h2>
  <table><thead><tr><th>check</th><th>result</th><th>time</th><th>detail</th></tr></thead>
  <tbody id="checks"></tbody></table>
  <footer>$app_name &middot; flask-appmetrics $version &middot; refreshes every
  $refresh s &middot; <span id="updated">server-rendered</span></footer>
</main>
<script id="snapshot" type="application/json">$snapshot</script>
<script>
(function () {
  "use strict";
  var DATA_URL = $data_url, REFRESH_MS = $refresh * 1000;
  var LAT = "$latency_colour", ERR = "$error_colour";
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    return node;
  }
  function text(id, value) { document.getElementById(id).textContent = value; }
  function plot(series) {
    var svg = document.getElementById("plot"), W = 900, H = 220, P = 28;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.appendChild(el("rect", {x: 0, y: 0, width: W, height: H, fill: "#ffffff"}));
    svg.appendChild(el("line", {x1: P, y1: H - P, x2: W - 4, y2: H - P, stroke: "#9e9e9e"}));
    var buckets = series.buckets || [], lat = series.latency_ms || [];
    var maxErr = 1;
    buckets.forEach(function (b) { maxErr = Math.max(maxErr, b.errors); });
    var bw = (W - P - 4) / Math.max(buckets.length, 1);
    buckets.forEach(function (b, i) {
      if (!b.errors) { return; }
      var h = (H - 2 * P) * b.errors / maxErr;
      svg.appendChild(el("rect", {"class": "error-bar", x: P + i * bw + 1, y: H - P - h,
        width: Math.max(bw - 2, 2), height: h, fill: ERR}));
    });
    var maxLat = 1;
    lat.forEach(function (v) { maxLat = Math.max(maxLat, v); });
    if (lat.length) {
      var step = (W - P - 4) / Math.max(lat.length - 1, 1), pts = [];
      lat.forEach(function (v, i) {
        pts.push((P + i * step).toFixed(1) + "," + (H - P - (H - 2 * P) * v / maxLat).toFixed(1));
      });
      if (pts.length === 1) { pts.push((W - 4) + "," + pts[0].split(",")[1]); }
      svg.appendChild(el("polyline", {id: "latency-line", points: pts.join(" "), fill: "none",
        stroke: LAT, "stroke-width": 4, "stroke-linejoin": "round"}));
    }
    var label = el("text", {x: P + 4, y: 16, "font-size": 12, fill: "#424242"});
    label.textContent = "max " + maxLat.toFixed(1) + " ms over the last " + lat.length +
      " requests; " + buckets.reduce(function (n, b) { return n + b.errors; }, 0) +
      " errors in " + Math.round(series.window_seconds || 0) + " s";
    svg.appendChild(label);
  }
  function render(d) {
    var banner = document.getElementById("banner");
    banner.className = "status-" + d.status;
    banner.setAttribute("data-status", d.status);
    text("status-text", d.status);
    text("reasons", (d.reasons && d.reasons.length) ? d.reasons.join("; ") : "All good.");
    text("requests", d.recent_requests_5min);
    text("errors", d.recent_errors_5min);
    text("latency", d.avg_response_time_ms.toFixed(1) + " / " +
      d.p95_response_time_ms.toFixed(1) + " ms");
    text("users", d.concurrent_users);
    var body = document.getElementById("checks");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var rows = [];
    Object.keys(d.checks || {}).forEach(function (name) {
      var c = d.checks[name];
      rows.push([name, c.status === "pass" ? "pass" : (c.critical ? "fail" : "warn"),
        c.duration_ms !== undefined ? c.duration_ms + " ms" : "", c.error || ""]);
    });
    Object.keys(d.circuit_breakers || {}).forEach(function (name) {
      var s = d.circuit_breakers[name];
      rows.push(["circuit breaker " + name, s === "open" ? "warn" : "pass", "", s]);
    });
    if (!rows.length) { rows.push(["(no checks registered)", "", "", ""]); }
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "check";
      r.forEach(function (v, i) {
        var td = document.createElement("td");
        td.textContent = v;
        if (i === 1) { td.className = v; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    plot(d.series || {});
  }
  function refresh() {
    fetch(DATA_URL, {headers: {"Accept": "application/json"}, cache: "no-store",
                     credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        render(d);
        text("updated", "refreshed " + new Date().toLocaleTimeString());
      })
      .catch(function (e) { text("updated", "refresh failed: " + e); });
  }
  render(JSON.parse(document.getElementById("snapshot").textContent));
  document.body.setAttribute("data-rendered", "yes");
  setInterval(refresh, REFRESH_MS);
})();
</script>
</body>
</html>
"""
)
