"""``/api/health``, ``/livez``, ``/readyz`` and ``get_health_status()`` on real Flask apps."""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

import flask_appmetrics.app_state as state_module
from flask_appmetrics import ConfigurationError, FlaskMetrics, get_health_status
from flask_appmetrics.health.checks import CheckRegistry
from flask_appmetrics.health.monitor import HealthMonitor
from flask_appmetrics.health.windows import BucketedCounter, RecentUsers
from flask_appmetrics.settings import HealthSettings
from flask_appmetrics.web.health_views import HEALTH_BLUEPRINT
from tests.support.apps import AppFactory
from tests.support.clock import FakeClock

HEALTH_SUMMARY_KEYS = ("status", "recent_errors_5min", "avg_response_time_ms", "concurrent_users")
HEALTH_JSON = "application/health+json"
#: The error ratio judges from the first request (the default waits for 20): for tests of
#: the ratio's thresholds with a handful of requests.
EVERY_REQUEST = {"APPMETRICS_HEALTH_MIN_REQUESTS": 1}


def add_health_routes(app: Flask) -> None:
    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "down", 500

    @app.get("/missing")
    def missing() -> tuple[str, int]:
        return "no such thing", 404

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.01)
        return "slow"


@pytest.fixture
def make(app_factory: AppFactory) -> AppFactory:
    """An app factory whose apps also have the routes above."""

    def build(config: dict[str, Any] | None = None, **kwargs: Any) -> Flask:
        app = app_factory(config, **kwargs)
        add_health_routes(app)
        return app

    return build


def monitor_of(app: Flask) -> HealthMonitor:
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.health is not None
    return state.health


def health(app: Flask, **headers: str) -> tuple[int, dict[str, Any]]:
    response = app.test_client().get("/api/health", headers=headers)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert isinstance(body, dict)
    return response.status_code, body


# -- the summary JSON -------------------------------------------------------------------------


def test_fresh_app_answers_the_original_services_json(make: AppFactory) -> None:
    app = make()
    response = app.test_client().get("/api/health")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert {key: body[key] for key in HEALTH_SUMMARY_KEYS} == {
        "status": "healthy",
        "recent_errors_5min": 0,
        "avg_response_time_ms": 0.0,
        "concurrent_users": 0,
    }
    assert isinstance(body["avg_response_time_ms"], float)
    assert list(body)[:4] == list(
        HEALTH_SUMMARY_KEYS
    )  # the original service's keys come first, in its order


def test_extras_beside_the_summary_keys(make: AppFactory) -> None:
    app = make(EVERY_REQUEST)
    client = app.test_client()
    for _ in range(3):
        client.get("/ok")
    client.get("/fail")
    _, body = health(app)
    assert body["recent_requests_5min"] == 4
    assert body["recent_errors_5min"] == 1
    assert body["error_ratio_5min"] == 0.25
    assert body["latency_samples"] == 4
    assert body["p95_response_time_ms"] >= body["avg_response_time_ms"] > 0
    assert body["max_response_time_ms"] >= body["p95_response_time_ms"]
    assert body["error_window_seconds"] == 300
    assert body["uptime_seconds"] >= 0
    assert body["checks"] == {}
    assert body["circuit_breakers"] == {}
    assert body["reasons"] == ["error ratio 0.250 >= 0.05"]
    assert body["error_ratio_min_requests"] == 1
    assert body["scope"] == "process"


def test_get_health_status_matches_the_endpoint(make: AppFactory) -> None:
    app = make(EVERY_REQUEST)
    app.test_client().get("/fail")
    with app.app_context():
        status = get_health_status()
    _, body = health(app)
    for key in (*HEALTH_SUMMARY_KEYS, "recent_requests_5min"):
        assert status[key] == body[key]
    assert status["status"] == "unhealthy"


def test_get_health_status_outside_a_context_uses_the_latest_app(make: AppFactory) -> None:
    first = make()
    second = make()
    second.test_client().get("/fail")
    assert get_health_status()["recent_errors_5min"] == 1  # the second, latest app
    with first.app_context():
        assert get_health_status()["recent_errors_5min"] == 0


def test_get_health_status_without_any_app_warns_and_says_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_module, "_latest", None)
    with pytest.warns(RuntimeWarning, match="no Flask app has been initialised"):
        status = get_health_status()
    assert status == {
        "status": "unknown",
        "recent_errors_5min": 0,
        "avg_response_time_ms": 0.0,
        "concurrent_users": 0,
    }


# -- exact, bounded windows -----------------------------------------------------------------


def test_errors_are_counted_exactly_far_beyond_the_latency_ring(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for _ in range(1000):
        client.get("/fail")
    for _ in range(200):
        client.get("/ok")
    status, body = health(app)
    assert body["recent_errors_5min"] == 1000
    assert body["recent_requests_5min"] == 1200
    assert body["latency_samples"] == 100  # the ring holds the last 100 only
    assert status == 503


def test_client_errors_are_not_app_errors(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for _ in range(5):
        client.get("/missing")
        client.get("/no/such/route")
    status, body = health(app)
    assert (status, body["status"], body["recent_errors_5min"]) == (200, "healthy", 0)
    assert body["recent_requests_5min"] == 10


def test_unhandled_exceptions_are_errors(make: AppFactory) -> None:
    app = make()
    app.test_client().get("/boom")
    _, body = health(app)
    assert body["recent_errors_5min"] == 1


def test_errors_leave_the_window_after_five_minutes(make: AppFactory) -> None:
    app = make()
    clock = FakeClock()
    monitor_of(app).requests = BucketedCounter(300, clock=clock)
    client = app.test_client()
    for _ in range(150):
        client.get("/fail")
    assert health(app)[1]["recent_errors_5min"] == 150
    clock.advance(299)
    assert health(app)[1]["status"] == "unhealthy"
    clock.advance(1)
    status, body = health(app)
    assert (status, body["status"], body["recent_errors_5min"]) == (200, "healthy", 0)


def test_latency_window_size_is_configurable(make: AppFactory) -> None:
    app = make({"APPMETRICS_HEALTH_LATENCY_WINDOW": 7})
    client = app.test_client()
    for _ in range(20):
        client.get("/ok")
    assert health(app)[1]["latency_samples"] == 7


def test_error_window_is_configurable(make: AppFactory) -> None:
    app = make({"APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": 60})
    assert health(app)[1]["error_window_seconds"] == 60


def test_eight_threads_are_recorded_exactly(make: AppFactory) -> None:
    app = make()

    def work() -> None:
        client = app.test_client()
        for i in range(100):
            client.get("/fail" if i % 4 == 0 else "/ok")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, body = health(app)
    assert (body["recent_requests_5min"], body["recent_errors_5min"]) == (800, 200)


def test_probes_and_scrapes_stay_out_of_the_windows(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for _ in range(10):
        for path in ("/api/health", "/livez", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200
    _, body = health(app)
    assert body["recent_requests_5min"] == 0
    assert body["latency_samples"] == 0
    assert body["concurrent_users"] == 0
    assert HEALTH_BLUEPRINT in FlaskMetrics.state(app).own_blueprints  # type: ignore[union-attr]


def test_excluded_paths_stay_out_of_the_windows(make: AppFactory) -> None:
    app = make({"APPMETRICS_EXCLUDE_PATHS": ["/ok"]})
    app.test_client().get("/ok")
    _, body = health(app)
    assert (body["recent_requests_5min"], body["concurrent_users"]) == (0, 0)


# -- thresholds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected", "code"),
    [(0, "healthy", 200), (1, "healthy", 200), (2, "degraded", 200), (6, "unhealthy", 503)],
)
def test_error_ratio_thresholds(make: AppFactory, failures: int, expected: str, code: int) -> None:
    app = make(
        {
            "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 0.2,
            "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": 0.6,
            **EVERY_REQUEST,
        }
    )
    client = app.test_client()
    for i in range(10):
        client.get("/fail" if i < failures else "/ok")
    status, body = health(app)
    assert (status, body["status"]) == (code, expected)


def test_default_thresholds(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for _ in range(19):
        client.get("/ok")
    client.get("/fail")  # 5%: degraded
    assert health(app)[1]["status"] == "degraded"
    for _ in range(18):
        client.get("/fail")  # 19 of 38: 50%, unhealthy
    status, body = health(app)
    assert (status, body["status"]) == (503, "unhealthy")


def test_all_errors_is_unhealthy_even_with_the_loosest_threshold(make: AppFactory) -> None:
    app = make(
        {
            "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 1.0,
            "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": 1.0,
            **EVERY_REQUEST,
        }
    )
    app.test_client().get("/fail")
    assert health(app)[0] == 503


# -- minimum requests before the error ratio judges ---------------------------------------


def test_one_error_on_a_quiet_app_stays_healthy(make: AppFactory) -> None:
    app = make()
    app.test_client().get("/fail")
    status, body = health(app)
    assert (status, body["status"]) == (200, "healthy")
    assert (body["recent_errors_5min"], body["recent_requests_5min"]) == (1, 1)
    assert body["error_ratio_5min"] == 1.0
    assert body["error_ratio_min_requests"] == 20
    assert body["reasons"] == []


def test_twenty_requests_with_eleven_errors_are_unhealthy(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for _ in range(11):
        client.get("/fail")
    for _ in range(8):
        client.get("/ok")
    # 19 requests: one short of judging, whatever the ratio.
    assert health(app)[1]["status"] == "healthy"
    client.get("/ok")
    status, body = health(app)
    assert (status, body["status"]) == (503, "unhealthy")
    assert (body["recent_errors_5min"], body["recent_requests_5min"]) == (11, 20)
    assert body["reasons"] == ["error ratio 0.550 >= 0.5"]


def test_a_quiet_app_hammered_with_errors_only_is_judged_from_the_minimum(
    make: AppFactory,
) -> None:
    app = make({"APPMETRICS_HEALTH_MIN_REQUESTS": 5})
    client = app.test_client()
    for expected in ("healthy", "healthy", "healthy", "healthy", "unhealthy"):
        client.get("/fail")
        assert health(app)[1]["status"] == expected


def monitor(min_requests: int, clock: FakeClock) -> HealthMonitor:
    settings = HealthSettings(
        latency_window=100,
        error_window_seconds=300.0,
        degraded_error_ratio=0.05,
        unhealthy_error_ratio=0.5,
        latency_threshold_seconds=None,
        check_timeout_seconds=0.5,
        users_window_seconds=300.0,
        users_max_tracked=10,
        min_requests=min_requests,
    )
    return HealthMonitor(settings, checks=CheckRegistry(), clock=clock)


def test_the_minimum_counts_requests_in_the_window_only() -> None:
    clock = FakeClock()
    judge = monitor(20, clock)
    for _ in range(30):
        judge.observe(0.01, 500)
    assert judge.evaluate().status == "unhealthy"
    clock.advance(200)
    for _ in range(10):
        judge.observe(0.01, 500)
    assert judge.evaluate().status == "unhealthy"  # 40 requests, all errors
    clock.advance(150)  # the first 30 left the window: 10 errors of 10 requests
    report = judge.evaluate()
    assert (report.status, report.error_status, report.reasons) == ("healthy", "healthy", ())
    assert (report.requests.requests, report.requests.errors) == (10, 10)
    for _ in range(9):
        judge.observe(0.01, 200)
    assert judge.evaluate().status == "healthy"  # 19
    judge.observe(0.01, 200)  # 20 requests, 10 errors: 0.5
    assert judge.evaluate().status == "unhealthy"
    clock.advance(400)
    assert judge.evaluate().requests.requests == 0
    assert judge.evaluate().status == "healthy"


@pytest.mark.parametrize(
    ("min_requests", "errors", "expected"),
    [
        (0, 1, "unhealthy"),
        (1, 1, "unhealthy"),
        (2, 1, "healthy"),
        (20, 19, "healthy"),
        (20, 20, "unhealthy"),
    ],
)
def test_the_minimum_on_a_fake_clock(min_requests: int, errors: int, expected: str) -> None:
    judge = monitor(min_requests, FakeClock())
    for _ in range(errors):
        judge.observe(0.01, 503)
    report = judge.evaluate()
    assert report.status == expected
    assert report.requests.errors == errors  # exact, whether it judges or not


def test_below_the_minimum_the_latency_and_checks_still_judge(make: AppFactory) -> None:
    app = make({"APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": 0.005})
    app.test_client().get("/slow")
    assert health(app)[1]["status"] == "degraded"


@pytest.mark.parametrize("bad", [-1, 2.5, "twenty", True, None, 2**60])
def test_a_bad_minimum_is_refused_at_start(app_factory: AppFactory, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="APPMETRICS_HEALTH_MIN_REQUESTS") as caught:
        app_factory({"APPMETRICS_HEALTH_MIN_REQUESTS": bad})
    assert caught.value.key == "APPMETRICS_HEALTH_MIN_REQUESTS"


def test_slow_p95_degrades(make: AppFactory) -> None:
    app = make({"APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": 0.005})
    client = app.test_client()
    client.get("/slow")  # sleeps 10 ms
    status, body = health(app)
    assert (status, body["status"]) == (200, "degraded")
    assert body["reasons"][0].startswith("p95 latency")


def test_latency_threshold_none_turns_it_off(make: AppFactory) -> None:
    app = make({"APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": None})
    app.test_client().get("/slow")
    assert health(app)[1]["status"] == "healthy"


def test_open_circuit_breaker_degrades(make: AppFactory, registry: CollectorRegistry) -> None:
    app = make()
    state = FlaskMetrics.state(app)
    assert state is not None
    breaker = state.metric_set.gauge("circuit_breaker_state")
    breaker.labels(service="gemini").set(2)
    breaker.labels(service="cache").set(0)
    status, body = health(app)
    assert (status, body["status"]) == (200, "degraded")
    assert body["circuit_breakers"] == {"cache": "closed", "gemini": "open"}
    assert body["reasons"] == ["circuit breaker 'gemini' is open"]
    breaker.labels(service="gemini").set(1)  # half-open: trying again
    assert health(app)[1]["status"] == "healthy"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 0.7}, "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO"),
        (
            {"APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO": 1.5},
            "APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO",
        ),
        ({"APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO": 0}, "APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO"),
        ({"APPMETRICS_HEALTH_LATENCY_WINDOW": 0}, "APPMETRICS_HEALTH_LATENCY_WINDOW"),
        (
            {"APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS": "5m"},
            "APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS",
        ),
        (
            {"APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS": -1},
            "APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS",
        ),
        ({"APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS": 0}, "APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS"),
        ({"APPMETRICS_USERS_WINDOW_SECONDS": True}, "APPMETRICS_USERS_WINDOW_SECONDS"),
        ({"APPMETRICS_USERS_MAX_TRACKED": 0}, "APPMETRICS_USERS_MAX_TRACKED"),
    ],
)
def test_bad_health_settings_are_refused_at_start(
    app_factory: AppFactory, config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigurationError, match=key) as caught:
        app_factory(config)
    assert caught.value.key == key


def test_health_defaults_are_visible_in_app_config(make: AppFactory) -> None:
    app = make()
    assert app.config["APPMETRICS_HEALTH_LATENCY_WINDOW"] == 100
    assert app.config["APPMETRICS_HEALTH_ERROR_WINDOW_SECONDS"] == 300
    assert app.config["APPMETRICS_HEALTH_DEGRADED_ERROR_RATIO"] == 0.05
    assert app.config["APPMETRICS_HEALTH_UNHEALTHY_ERROR_RATIO"] == 0.5
    assert app.config["APPMETRICS_HEALTH_LATENCY_THRESHOLD_SECONDS"] == 5.0
    assert app.config["APPMETRICS_HEALTH_CHECK_TIMEOUT_SECONDS"] == 0.5
    assert app.config["APPMETRICS_USERS_WINDOW_SECONDS"] == 300
    assert app.config["APPMETRICS_USERS_MAX_TRACKED"] == 10_000
    assert app.config["APPMETRICS_HEALTH_MIN_REQUESTS"] == 20


# -- endpoints ------------------------------------------------------------------------------


def test_livez_and_readyz(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for path in ("/livez", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.get_json()["status"] == "pass"


def test_paths_are_configurable(make: AppFactory) -> None:
    app = make(
        {
            "APPMETRICS_HEALTH_PATH": "/healthz",
            "APPMETRICS_LIVEZ_PATH": "/-/live",
            "APPMETRICS_READYZ_PATH": "/-/ready",
        }
    )
    client = app.test_client()
    assert client.get("/healthz").get_json()["status"] == "healthy"
    assert client.get("/-/live").status_code == 200
    assert client.get("/-/ready").status_code == 200
    for old in ("/api/health", "/livez", "/readyz"):
        assert client.get(old).status_code == 404


def test_none_turns_each_endpoint_off(make: AppFactory) -> None:
    app = make({"APPMETRICS_LIVEZ_PATH": None})
    client = app.test_client()
    assert client.get("/livez").status_code == 404
    assert client.get("/api/health").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_none_everywhere_registers_no_blueprint(make: AppFactory) -> None:
    app = make(
        {
            "APPMETRICS_HEALTH_PATH": None,
            "APPMETRICS_LIVEZ_PATH": None,
            "APPMETRICS_READYZ_PATH": None,
        }
    )
    assert HEALTH_BLUEPRINT not in app.blueprints
    assert app.test_client().get("/api/health").status_code == 404
    with app.app_context():
        assert get_health_status()["status"] == "healthy"  # the monitor still works


def test_constructor_style_serves_health(registry: CollectorRegistry) -> None:
    app = Flask("ctor")
    FlaskMetrics(app, registry=registry)
    assert app.test_client().get("/api/health").status_code == 200


def test_a_failing_health_evaluation_is_a_503_never_a_500(
    make: AppFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenWindow:
        def record(self, error: bool) -> None:
            pass

        def counts(self) -> Any:
            raise RuntimeError("window backend down")

    app = make()
    monitor_of(app).requests = BrokenWindow()
    status, body = health(app)
    assert (status, body) == (503, {"status": "unhealthy", "error": "internal"})
    assert "window backend down" in caplog.text
    internal = registry.get_sample_value(
        "flask_appmetrics_internal_errors_total", {"component": "health"}
    )
    assert internal == 1.0


# -- application/health+json ----------------------------------------------------------------


def test_health_json_when_asked(make: AppFactory) -> None:
    app = make()
    app.test_client().get("/ok")
    response = app.test_client().get("/api/health", headers={"Accept": HEALTH_JSON})
    assert response.status_code == 200
    assert response.mimetype == HEALTH_JSON
    assert response.headers["Cache-Control"] == "no-store"
    assert "Accept" in response.headers["Vary"]
    body = response.get_json()
    assert body["status"] == "pass"
    assert body["description"] == "health of test_app"
    checks = body["checks"]
    assert set(checks) >= {"http:errorRatio", "http:responseTime", "users:concurrent", "uptime"}
    for key, entries in checks.items():
        assert ":" in key or key == "uptime"
        assert isinstance(entries, list)
        assert entries[0]["status"] in {"pass", "warn", "fail"}
    assert checks["http:errorRatio"][0]["observedValue"] == 0.0
    assert checks["http:responseTime"][0]["observedUnit"] == "ms"


@pytest.mark.parametrize(("failures", "status", "code"), [(1, "warn", 200), (3, "fail", 503)])
def test_health_json_maps_degraded_to_warn_and_unhealthy_to_fail(
    make: AppFactory, failures: int, status: str, code: int
) -> None:
    app = make(EVERY_REQUEST)
    client = app.test_client()
    for i in range(4):
        client.get("/fail" if i < failures else "/ok")
    response = client.get("/api/health", headers={"Accept": HEALTH_JSON})
    body = response.get_json()
    assert (response.status_code, body["status"]) == (code, status)
    assert body["checks"]["http:errorRatio"][0]["status"] == status
    assert body["output"].startswith("error ratio")


def test_plain_json_for_api_clients_and_curl(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for accept in ("*/*", "application/json, text/plain, */*", "application/json"):
        response = client.get("/api/health", headers={"Accept": accept})
        assert response.mimetype == "application/json"
        assert response.get_json()["status"] == "healthy"


def test_health_json_for_probes(make: AppFactory) -> None:
    app = make()
    client = app.test_client()
    for path in ("/livez", "/readyz"):
        response = client.get(path, headers={"Accept": HEALTH_JSON})
        assert response.mimetype == HEALTH_JSON
        assert response.get_json()["status"] == "pass"


# -- concurrent users (the endpoint side; identities in test_health_users.py) ---------------


def test_users_window_expires(make: AppFactory) -> None:
    app = make()
    clock = FakeClock()
    monitor_of(app).users = RecentUsers(300, clock=clock)
    client = app.test_client()
    client.get("/ok", headers={"Authorization": "Bearer a"})
    client.get("/ok", headers={"Authorization": "Bearer b"})
    assert health(app)[1]["concurrent_users"] == 2
    clock.advance(301)
    assert health(app)[1]["concurrent_users"] == 0


def test_no_warning_is_left_behind(make: AppFactory) -> None:
    app = make()
    app.test_client().get("/ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with app.app_context():
            status = get_health_status()
    assert status["status"] == "healthy"
    assert tuple(status)[: len(HEALTH_SUMMARY_KEYS)] == HEALTH_SUMMARY_KEYS
    assert (status["recent_requests_5min"], status["recent_errors_5min"]) == (1, 0)
    assert status["checks"] == {}
    assert "error" not in status


@pytest.mark.parametrize("style", ["constructor", "init_app"])
@pytest.mark.parametrize("explicit_registry", [True, False], ids=["own-registry", "default"])
def test_each_app_has_its_own_windows(style: str, explicit_registry: bool) -> None:
    registry = CollectorRegistry() if explicit_registry else None

    def build(name: str) -> Flask:
        app = Flask(name)
        app.config.update(EVERY_REQUEST)
        add_health_routes(app)
        if style == "constructor":
            FlaskMetrics(app, registry=registry)
        else:
            FlaskMetrics(registry=registry).init_app(app)
        return app

    failing, fine = build("failing"), build("fine")
    failing.test_client().get("/fail")
    fine.test_client().get("/ok")
    assert health(failing)[0] == 503
    status, body = health(fine)
    assert (status, body["recent_requests_5min"], body["recent_errors_5min"]) == (200, 1, 0)
