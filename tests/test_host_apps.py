"""Realistic host apps, served the way WSGI servers serve them (call, iterate, close).

Every request a server completes is recorded exactly once whatever its body, in-progress
gauges return to 0, probes stay public and truthful under the app's own auth extension,
and nothing of the host changes: its routes, its files, its responses.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import AppMetricsError, FlaskMetrics
from tests.support.hosts import assistant, backoffice, shop, tokens_api
from tests.support.hosts._counting import runs
from tests.support.wsgi import Served, serve

SHOP_FILES = Path(shop.__file__).with_name("files")
SHOP_STATIC = Path(shop.__file__).with_name("static")
SUMMARY = {"status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users"}
STATIC = "/static/<path:filename>"


def _total(registry: CollectorRegistry, method: str, endpoint: str, status: int) -> float | None:
    labels = {"method": method, "endpoint": endpoint, "status": str(status)}
    return registry.get_sample_value("http_requests_total", labels)


def _durations(registry: CollectorRegistry, method: str, endpoint: str) -> float | None:
    labels = {"method": method, "endpoint": endpoint}
    return registry.get_sample_value("http_request_duration_seconds_count", labels)


def _samples(registry: CollectorRegistry, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def _requests_recorded(registry: CollectorRegistry) -> float:
    return sum(_samples(registry, "http_requests_total").values())


def _in_progress(registry: CollectorRegistry) -> dict[frozenset[tuple[str, str]], float]:
    """Every in-progress series that is not 0 (none, once all requests are done)."""
    return {k: v for k, v in _samples(registry, "http_requests_in_progress").items() if v != 0}


def _health(app: Flask, **headers: str) -> Served:
    return serve(app, "/api/health", headers=headers)


# -- the shop: blueprints, static files, downloads --------------------------------------------


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def shop_app(registry: CollectorRegistry) -> Flask:
    return shop.create_app(registry=registry)


BODIES = [
    pytest.param(("GET", "/static/css/style.css", {}, 200, STATIC), id="static-css"),
    pytest.param(("GET", "/static/app.js", {}, 200, STATIC), id="static-js"),
    pytest.param(("HEAD", "/static/css/style.css", {}, 200, STATIC), id="static-head"),
    pytest.param(("GET", "/static/app.js", {"Range": "bytes=0-9"}, 206, STATIC), id="static-range"),
    pytest.param(
        ("GET", "/downloads/prices.csv", {}, 200, "/downloads/prices.csv"), id="send-file"
    ),
    pytest.param(
        ("GET", "/downloads/prices.csv", {"Range": "bytes=100-8999"}, 206, "/downloads/prices.csv"),
        id="send-file-range",
    ),
    pytest.param(
        ("HEAD", "/downloads/prices.csv", {}, 200, "/downloads/prices.csv"), id="send-file-head"
    ),
    pytest.param(
        ("GET", "/downloads/files/prices.csv", {}, 200, "/downloads/files/<path:name>"),
        id="send-from-directory",
    ),
    pytest.param(("GET", "/downloads/receipt", {}, 200, "/downloads/receipt"), id="send-bytesio"),
    pytest.param(
        ("GET", "/products/export", {}, 200, "/products/export"), id="stream-with-context"
    ),
    pytest.param(("GET", "/products/2", {}, 200, "/products/<int:product_id>"), id="json"),
]


@pytest.mark.parametrize("file_wrapper", [False, True], ids=["iterator", "wsgi-file-wrapper"])
@pytest.mark.parametrize("case", BODIES)
def test_every_body_is_recorded_exactly_once(
    registry: CollectorRegistry,
    shop_app: Flask,
    file_wrapper: bool,
    case: tuple[str, str, dict[str, str], int, str],
) -> None:
    method, path, headers, status, endpoint = case
    for n in (1, 2, 3):
        served = serve(shop_app, path, method=method, headers=headers, file_wrapper=file_wrapper)
        assert served.status == status
        assert served.closed
        assert _total(registry, method, endpoint, status) == n
        assert _durations(registry, method, endpoint) == n
        assert _in_progress(registry) == {}
    health = _health(shop_app).json()
    assert health["recent_requests_5min"] == 3
    assert health["latency_samples"] == 3


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/static/css/style.css", STATIC),
        ("/downloads/prices.csv", "/downloads/prices.csv"),
        ("/downloads/files/prices.csv", "/downloads/files/<path:name>"),
    ],
)
def test_conditional_requests_answered_304_are_recorded(
    registry: CollectorRegistry, shop_app: Flask, path: str, endpoint: str
) -> None:
    first = serve(shop_app, path)
    etag = first.headers["ETag"]
    again = serve(shop_app, path, headers={"If-None-Match": etag})
    assert (first.status, again.status, again.body) == (200, 304, b"")
    assert _total(registry, "GET", endpoint, 200) == 1
    assert _total(registry, "GET", endpoint, 304) == 1
    assert _durations(registry, "GET", endpoint) == 2
    assert _in_progress(registry) == {}


def test_a_page_load_with_its_assets_counts_every_request(
    registry: CollectorRegistry, shop_app: Flask
) -> None:
    # What a browser does 20 times: the page, its stylesheet and script, a product, the
    # price list (whole, then a range), a receipt, the CSV export.
    page = [
        "/",
        "/static/css/style.css",
        "/static/app.js",
        "/products/1",
        "/downloads/prices.csv",
        "/downloads/receipt",
        "/products/export",
    ]
    for _ in range(20):
        for path in page:
            assert serve(shop_app, path).status == 200
        assert (
            serve(shop_app, "/downloads/prices.csv", headers={"Range": "bytes=0-1"}).status == 206
        )
    assert _total(registry, "GET", STATIC, 200) == 40
    assert _total(registry, "GET", "/downloads/prices.csv", 200) == 20
    assert _total(registry, "GET", "/downloads/prices.csv", 206) == 20
    assert _requests_recorded(registry) == 20 * (len(page) + 1)
    assert _in_progress(registry) == {}
    health = _health(shop_app).json()
    assert health["recent_requests_5min"] == 20 * (len(page) + 1)
    # The health request is itself counted, after the fact.
    assert _total(registry, "GET", "/api/health", 200) == 1


def test_a_streamed_body_is_timed_to_its_end(registry: CollectorRegistry) -> None:
    app = assistant.create_app(registry=registry)
    served = serve(app, "/api/stream?prompt=poem&delay=0.05")
    assert served.text == "one two three "
    labels = {"method": "GET", "endpoint": "/api/stream"}
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 1
    duration = registry.get_sample_value("http_request_duration_seconds_sum", labels)
    assert duration is not None
    assert duration >= 0.15
    assert _in_progress(registry) == {}


@pytest.mark.parametrize("file_wrapper", [False, True], ids=["iterator", "wsgi-file-wrapper"])
@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/downloads/prices.csv", "/downloads/prices.csv"),
        ("/downloads/files/prices.csv", "/downloads/files/<path:name>"),
    ],
)
def test_a_download_to_a_slow_client_is_timed_to_its_last_chunk(
    registry: CollectorRegistry, shop_app: Flask, file_wrapper: bool, path: str, endpoint: str
) -> None:
    # 14 kB in 8 kB chunks: two chunks, 0.1 s each to send.
    served = serve(shop_app, path, file_wrapper=file_wrapper, chunk_delay=0.1)
    assert served.body == (SHOP_FILES / "prices.csv").read_bytes()
    labels = {"method": "GET", "endpoint": endpoint}
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 1
    duration = registry.get_sample_value("http_request_duration_seconds_sum", labels)
    assert duration is not None
    assert duration >= 0.2
    assert _in_progress(registry) == {}


@pytest.mark.parametrize("file_wrapper", [False, True], ids=["iterator", "wsgi-file-wrapper"])
@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/downloads/prices.csv", "/downloads/prices.csv"),
        ("/static/css/style.css", STATIC),
        ("/products/export", "/products/export"),
    ],
)
def test_a_client_gone_mid_body_is_recorded_once(
    registry: CollectorRegistry, shop_app: Flask, file_wrapper: bool, path: str, endpoint: str
) -> None:
    # The server stops sending after the first chunk and closes the body.
    serve(shop_app, path, file_wrapper=file_wrapper, disconnect_after=1)
    assert _durations(registry, "GET", endpoint) == 1
    assert _requests_recorded(registry) == 1
    assert _in_progress(registry) == {}


def test_a_stream_failing_midway_is_recorded_once(
    registry: CollectorRegistry, shop_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    # The status line is already sent: the server logs the error and closes the body.
    with pytest.raises(RuntimeError, match="mid-export"):
        serve(shop_app, "/products/export?fail=1")
    assert _durations(registry, "GET", "/products/export") == 1
    assert _requests_recorded(registry) == 1
    assert _in_progress(registry) == {}
    assert serve(shop_app, "/products/export").status == 200
    assert _durations(registry, "GET", "/products/export") == 2


def _bare_equivalent(response: Served) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "Date")
    return response.status, response.body, headers


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", {}),
        ("GET", "/static/css/style.css", {}),
        ("HEAD", "/static/app.js", {}),
        ("GET", "/downloads/prices.csv", {"Range": "bytes=10-20"}),
        ("GET", "/downloads/files/prices.csv", {}),
        ("GET", "/downloads/files/../__init__.py", {}),
        ("GET", "/products/export", {}),
        ("GET", "/products/9", {}),
        ("POST", "/products/1", {}),
    ],
)
def test_the_shop_answers_exactly_as_without_the_extension(
    shop_app: Flask, method: str, path: str, headers: dict[str, str]
) -> None:
    bare = shop.create_app(instrumented=False)
    ours = serve(shop_app, path, method=method, headers=headers)
    theirs = serve(bare, path, method=method, headers=headers)
    assert _bare_equivalent(ours) == _bare_equivalent(theirs)


def test_the_shops_routes_and_files_are_its_own(shop_app: Flask) -> None:
    bare = shop.create_app(instrumented=False)
    added = {r.rule for r in shop_app.url_map.iter_rules()} - {
        r.rule for r in bare.url_map.iter_rules()
    }
    # Only the extension's own endpoints are added; the shop's keep their views.
    assert added == {"/metrics", "/api/health", "/livez", "/readyz", "/status"}
    for rule in bare.url_map.iter_rules():
        # The same code (views defined in the factory are closures made per app).
        ours, theirs = shop_app.view_functions[rule.endpoint], bare.view_functions[rule.endpoint]
        assert ours.__code__ is theirs.__code__, rule
    assert shop_app.url_map.bind("").match("/static/app.js") == ("static", {"filename": "app.js"})
    before = {
        p: p.read_bytes() for p in [*SHOP_FILES.rglob("*"), *SHOP_STATIC.rglob("*")] if p.is_file()
    }
    for path in ("/static/css/style.css", "/downloads/prices.csv", "/downloads/files/prices.csv"):
        served = serve(shop_app, path)
        source = (
            SHOP_STATIC / "css/style.css"
            if path.startswith("/static")
            else SHOP_FILES / "prices.csv"
        )
        assert served.body == source.read_bytes()
    serve(shop_app, "/metrics")
    after = {
        p: p.read_bytes() for p in [*SHOP_FILES.rglob("*"), *SHOP_STATIC.rglob("*")] if p.is_file()
    }
    assert after == before


def test_one_failure_on_a_quiet_shop_keeps_it_healthy(
    registry: CollectorRegistry, shop_app: Flask
) -> None:
    assert serve(shop_app, "/products/broken").status == 500
    health = _health(shop_app)
    # A load balancer keeps the replica: one 5xx is no evidence of a broken app.
    assert health.status == 200
    body = health.json()
    assert body["status"] in {"healthy", "degraded"}
    assert body["recent_errors_5min"] == 1
    assert serve(shop_app, "/readyz").status == 200
    assert _total(registry, "GET", "/products/broken", 500) == 1
    labels = {"endpoint": "/products/broken", "error_type": "RuntimeError"}
    assert registry.get_sample_value("application_errors_total", labels) == 1


def test_a_shop_failing_steadily_is_reported_unhealthy(shop_app: Flask) -> None:
    # The minimum number of requests is no blind spot: a replica that fails every
    # request of a busy minute is unhealthy.
    for _ in range(150):
        assert serve(shop_app, "/products/broken").status == 500
    health = _health(shop_app)
    assert health.status == 503
    assert health.json()["recent_errors_5min"] == 150


# -- routes the app already has --------------------------------------------------------------


def _messages(caught: list[warnings.WarningMessage], caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        [str(w.message) for w in caught]
        + [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    )


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/health", "APPMETRICS_HEALTH_PATH"),
        ("/metrics", "APPMETRICS_METRICS_PATH"),
        ("/readyz", "APPMETRICS_READYZ_PATH"),
    ],
)
def test_init_app_refuses_a_path_the_app_already_routes(
    registry: CollectorRegistry, path: str, key: str
) -> None:
    app = shop.create_app(instrumented=False)

    @app.get(path)
    def own_view() -> dict[str, str]:
        return {"database": "ok"}

    with pytest.raises(AppMetricsError) as info:
        FlaskMetrics(registry=registry).init_app(app)
    assert path in str(info.value)
    assert key in str(info.value)
    # The app's own view is still the one answering.
    assert serve(app, path).json() == {"database": "ok"}


def test_init_app_accepts_the_moved_path(registry: CollectorRegistry) -> None:
    app = shop.create_app(instrumented=False)

    @app.get("/api/health")
    def own_health() -> dict[str, str]:
        return {"database": "ok"}

    app.config["APPMETRICS_HEALTH_PATH"] = "/internal/health"
    FlaskMetrics(registry=registry).init_app(app)
    assert serve(app, "/api/health").json() == {"database": "ok"}
    assert set(serve(app, "/internal/health").json()) >= SUMMARY


def test_a_blueprint_routing_metrics_after_init_app_is_reported(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # The usual factory order: extensions first, then the blueprints.
    app = shop.create_app(registry=registry)
    admin = Blueprint("admin", __name__)

    @admin.get("/metrics")
    def business_metrics() -> dict[str, int]:
        return {"orders_today": 12}

    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.register_blueprint(admin)
        serve(app, "/products/1")
    reported = _messages(caught, caplog)
    assert "/metrics" in reported
    # Names the other side too: the key that moves ours, and the app's own view.
    assert "APPMETRICS_METRICS_PATH" in reported
    assert "business_metrics" in reported


# -- auth extensions on /metrics ---------------------------------------------------------------

HOSTS = ["flask-login", "flask-httpauth", "flask-jwt-extended"]


def _auth_app(kind: str, registry: CollectorRegistry, **config: Any) -> Flask:
    if kind == "flask-login":
        return backoffice.create_app("login", config, registry=registry)
    if kind == "flask-httpauth":
        return backoffice.create_app("httpauth", config, registry=registry)
    return tokens_api.create_app(config, registry=registry)


def _credentials(kind: str, app: Flask) -> dict[str, str]:
    """What a logged-in user (or a scraper with its token) sends."""
    if kind == "flask-httpauth":
        import base64

        raw = base64.b64encode(b"ada:lovelace-1815").decode()
        return {"Authorization": f"Basic {raw}"}
    if kind == "flask-jwt-extended":
        issued = serve(
            app,
            "/api/v1/tokens",
            method="POST",
            json={"client": "prometheus", "secret": "scraper-secret"},
        )
        assert issued.status == 201
        return {"Authorization": f"Bearer {issued.json()['access_token']}"}
    client = app.test_client()
    login = client.post("/login", data={"name": "ada", "password": "lovelace-1815"})
    assert login.status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is not None
    return {"Cookie": f"session={cookie.value}"}


def _assert_refused_by_the_extension(kind: str, refused: Served) -> None:
    """The auth extension's own answer, through its own handlers: never ours, never a 5xx."""
    assert b"http_requests_total" not in refused.body
    assert b"unhealthy" not in refused.body
    if kind == "flask-login":
        assert refused.status == 302
        assert refused.headers["Location"].startswith("/login?next=")
    elif kind == "flask-httpauth":
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="back office"'
        assert refused.body == b"Unauthorized Access"
    else:
        assert refused.status == 401
        assert refused.json() == {"msg": "Missing Authorization Header"}


@pytest.mark.parametrize("kind", HOSTS)
def test_metrics_refusal_is_the_auth_extensions_own(kind: str, registry: CollectorRegistry) -> None:
    app = _auth_app(kind, registry)
    refused = serve(app, "/metrics")
    _assert_refused_by_the_extension(kind, refused)
    assert _total(registry, "GET", "/metrics", refused.status) == 1
    allowed = serve(app, "/metrics", headers=_credentials(kind, app))
    assert allowed.status == 200
    names = {f.name for f in text_string_to_metric_families(allowed.text)}
    assert "http_requests" in names
    assert _in_progress(registry) == {}


@pytest.mark.parametrize("kind", HOSTS)
@pytest.mark.parametrize("accept", ["application/json", "text/html", "application/health+json"])
def test_probes_stay_public_under_the_auth_extension(
    kind: str, accept: str, registry: CollectorRegistry
) -> None:
    app = _auth_app(kind, registry)
    serve(app, "/")  # the host's own traffic
    health = _health(app, Accept=accept)
    # An anonymous browser gets the public JSON summary, not the status page (details).
    assert health.status == 200, health.body
    if accept in ("application/json", "text/html"):
        body = health.json()
        assert set(body) == SUMMARY
        assert body["status"] == "healthy"
        assert body["recent_errors_5min"] == 0
    elif accept == "application/health+json":
        assert health.json()["status"] == "pass"
    ready = serve(app, "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "pass"})
    assert serve(app, "/livez").status == 200
    status_page = serve(app, "/status", headers={"Accept": accept})
    # The status page shows details: the auth extension's to refuse, never public.
    _assert_refused_by_the_extension(kind, status_page)
    internal = _samples(registry, "flask_appmetrics_internal_errors_total")
    assert sum(internal.values()) == 0, internal


@pytest.mark.parametrize("kind", HOSTS)
def test_the_auth_decorator_runs_at_most_once_per_request(
    kind: str, registry: CollectorRegistry
) -> None:
    app = _auth_app(kind, registry)
    credentials = _credentials(kind, app)
    made: Counter[str] = Counter()
    for headers in ({}, credentials):
        for accept in ("application/json", "text/html", "application/health+json"):
            for path in ("/metrics", "/api/health", "/readyz", "/status"):
                serve(app, path, headers={**headers, "Accept": accept})
                made[path] += 1
    ran = Counter(runs(app))
    for path, count in ran.items():
        assert count <= made[path], (path, count, made[path])


@pytest.mark.parametrize("kind", HOSTS)
def test_health_kept_private_is_refused_by_the_auth_extension(
    kind: str, registry: CollectorRegistry
) -> None:
    app = _auth_app(kind, registry, APPMETRICS_AUTH_HEALTH="all")
    for path in ("/api/health", "/readyz"):
        _assert_refused_by_the_extension(kind, serve(app, path))
    assert serve(app, "/livez").status == 200
    credentials = _credentials(kind, app)
    assert serve(app, "/api/health", headers=credentials).json()["status"] == "healthy"
    assert serve(app, "/readyz", headers=credentials).status == 200
    internal = _samples(registry, "flask_appmetrics_internal_errors_total")
    assert sum(internal.values()) == 0, internal


@pytest.mark.parametrize("kind", HOSTS)
def test_logged_in_staff_see_the_details(kind: str, registry: CollectorRegistry) -> None:
    app = _auth_app(kind, registry)
    credentials = _credentials(kind, app)
    details = serve(app, "/api/health", headers=credentials)
    assert details.status == 200
    assert set(details.json()) > SUMMARY
    assert "checks" in details.json()


def test_probes_are_truthful_under_jwt(registry: CollectorRegistry) -> None:
    # A failure not reused: the database comes back between probes.
    config = {"DATABASE_UP": False, "APPMETRICS_HEALTH_CHECK_FAILURE_CACHE_SECONDS": 0}
    app = tokens_api.create_app(config, registry=registry)
    health = _health(app)
    # The database check failed: anonymous probes say so, with the summary only.
    assert health.status == 503
    assert health.json()["status"] == "unhealthy"
    assert set(health.json()) == SUMMARY
    ready = serve(app, "/readyz")
    assert ready.status == 503
    assert ready.json()["status"] == "fail"
    app.config["DATABASE_UP"] = True
    assert _health(app).status == 200
    assert serve(app, "/readyz").status == 200
    internal = _samples(registry, "flask_appmetrics_internal_errors_total")
    assert sum(internal.values()) == 0, internal


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        ("Bearer not-a-token", 422, "Not enough segments"),
        ("Basic YWRhOmxvdmVsYWNl", 401, "Missing 'Bearer' type"),
    ],
)
def test_a_bad_token_gets_the_jwt_extensions_answer_and_the_public_summary(
    registry: CollectorRegistry, authorization: str, status: int, message: str
) -> None:
    app = tokens_api.create_app(registry=registry)
    headers = {"Authorization": authorization}
    refused = serve(app, "/metrics", headers=headers)
    assert refused.status == status
    assert refused.json()["msg"].startswith(message)
    assert _total(registry, "GET", "/metrics", status) == 1
    # Whatever the decorator makes of the credentials, the summary stays public.
    health = _health(app, **headers)
    assert health.status == 200, health.body
    assert set(health.json()) == SUMMARY
    ready = serve(app, "/readyz", headers=headers)
    assert (ready.status, ready.json()) == (200, {"status": "pass"})


def test_the_apis_own_routes_still_use_its_tokens(registry: CollectorRegistry) -> None:
    app = tokens_api.create_app(registry=registry)
    assert serve(app, "/api/v1/me").status == 401
    token = _credentials("flask-jwt-extended", app)
    assert serve(app, "/api/v1/me", headers=token).json() == {"client": "prometheus"}
    assert _total(registry, "GET", "/api/v1/me", 401) == 1
    assert _total(registry, "GET", "/api/v1/me", 200) == 1
    assert _total(registry, "POST", "/api/v1/tokens", 201) == 1


# -- an app calling an LLM, with Flask-Caching -------------------------------------------------


def _gemini(registry: CollectorRegistry, endpoint: str, status: str) -> float | None:
    labels = {"endpoint": endpoint, "model": assistant.MODEL, "status": status}
    return registry.get_sample_value("gemini_api_calls_total", labels)


def test_llm_calls_and_cache_lookups_are_exact(registry: CollectorRegistry) -> None:
    app = assistant.create_app(registry=registry)
    prompts = [f"topic {i % 4}" for i in range(12)]  # 4 misses, then 8 hits
    for prompt in prompts:
        assert serve(app, f"/api/generate?prompt={prompt}").status == 200
    assert serve(app, "/api/generate?prompt=fail").status == 503
    for i in range(3):
        assert serve(app, f"/api/summarise?text=report+{i}").status == 200
    assert _gemini(registry, "/api/generate", "success") == 4
    assert _gemini(registry, "/api/generate", "error") == 1
    assert _gemini(registry, "/api/summarise", "success") == 3
    cache = {"operation": "get"}
    assert registry.get_sample_value("cache_operations_total", {**cache, "result": "hit"}) == 8
    assert registry.get_sample_value("cache_operations_total", {**cache, "result": "miss"}) == 5
    labels = {"endpoint": "/api/summarise", "model": assistant.MODEL}
    # "summary of report N": 4 prompt words, 7 response tokens, three calls.
    assert registry.get_sample_value("gemini_api_tokens_total", labels) == 3 * 11
    assert _total(registry, "GET", "/api/generate", 200) == 12
    assert _total(registry, "GET", "/api/generate", 503) == 1
    assert _in_progress(registry) == {}


def test_a_streamed_llm_answer_is_timed_over_the_stream(registry: CollectorRegistry) -> None:
    app = assistant.create_app(registry=registry)
    assert serve(app, "/api/stream?prompt=poem&delay=0.05").text == "one two three "
    assert _gemini(registry, "/api/stream", "success") == 1
    labels = {"endpoint": "/api/stream", "model": assistant.MODEL}
    duration = registry.get_sample_value("gemini_api_duration_seconds_sum", labels)
    assert duration is not None
    assert duration >= 0.15
    # The stream breaks after two chunks: an error, not a success.
    assert serve(app, "/api/stream?prompt=fail&delay=0").text == "one two [stream interrupted]"
    assert _gemini(registry, "/api/stream", "error") == 1
    assert _gemini(registry, "/api/stream", "success") == 1
