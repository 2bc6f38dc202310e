"""``flask appmetrics``: the commands, through Flask's CLI runner on a real app."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from flask import Flask
from flask.cli import ScriptInfo
from prometheus_client import CollectorRegistry
from werkzeug.serving import BaseWSGIServer, make_server

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.cli import appmetrics
from tests.support.slo_app import TOKEN, create_app
from tests.support.wsgi import serve


def run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["appmetrics", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_init_app_adds_the_group_to_the_app_cli() -> None:
    app = create_app()
    assert app.cli.get_command(None, "appmetrics") is appmetrics  # type: ignore[arg-type]
    assert set(appmetrics.commands) == {"check", "rules", "status", "routes"}


def test_check_prints_the_effective_settings_and_the_objectives() -> None:
    code, out = run(create_app(), "check")
    assert code == 0, out
    assert "APPMETRICS_AUTH_TOKEN = <set, hidden>" in out
    assert TOKEN not in out
    assert "APPMETRICS_HEALTH_PATH = '/api/health'" in out  # a default, made visible
    assert "search (availability): 99.9% of requests do not fail with a 5xx over 30d" in out
    assert "search (latency): 99% of requests finish within 250 ms over 30d" in out
    assert "counts /search (GET|HEAD)" in out  # the POST view of /search is not counted
    assert "shop (availability)" in out
    assert "every route but /api/health" in out
    assert "FlaskAppSLOFastBurn (page): burn rate above 14.4x over 1h and 5m" in out
    assert out.rstrip().endswith("OK: the configuration is valid")


def test_check_fails_on_an_objective_that_cannot_be_used() -> None:
    app = create_app(APPMETRICS_SLOS=[{"endpoints": ["nope"], "availability": 0.99}])
    code, out = run(app, "check")
    assert code == 1
    assert "error: APPMETRICS_SLOS[0]: no view of the app has the endpoint 'nope'" in out
    assert "FAILED: 1 error(s)" in out


def test_check_reports_a_config_changed_after_init_app_and_warns_on_low_targets() -> None:
    app = create_app(APPMETRICS_SLOS=[{"name": "lax", "availability": 0.9}])
    app.config["APPMETRICS_STRICT"] = "maybe"
    code, out = run(app, "check")
    assert code == 1
    assert "error: APPMETRICS_STRICT: expected true or false" in out
    assert (
        "warning: lax (availability): with a target of 0.9, FlaskAppSLOFastBurn can never fire"
        in out
    )


def test_check_reports_an_app_that_cannot_load() -> None:
    def broken() -> Flask:
        return create_app(APPMETRICS_BUCKETS=(0.1, 1.0))

    result = (
        create_app()
        .test_cli_runner()
        .invoke(appmetrics, ["check"], obj=ScriptInfo(create_app=broken))
    )
    assert result.exit_code == 1
    assert "error: the app could not be loaded: ConfigurationError" in result.output
    assert "not a bucket boundary" in result.output
    assert "add 0.25 to APPMETRICS_BUCKETS" in result.output


def test_rules_writes_rules_and_tests_beside_them(tmp_path: Path) -> None:
    target = tmp_path / "prometheus" / "shop.rules.yml"
    code, out = run(create_app(), "rules", "-o", str(target), "--job", "shop")
    assert code == 0, out
    rules = yaml.safe_load(target.read_text())
    tests = yaml.safe_load((tmp_path / "prometheus" / "shop_test.yml").read_text())
    assert [g["name"] for g in rules["groups"]] == [
        "flask_appmetrics.slo.search.availability",
        "flask_appmetrics.slo.search.latency",
        "flask_appmetrics.slo.shop.availability",
    ]
    assert tests["rule_files"] == ["shop.rules.yml"]
    assert all('job="shop"' in s["series"] for case in tests["tests"] for s in case["input_series"])
    assert "wrote" in out
    assert "promtool test rules" in out
    # Printed instead, without tests.
    code, printed = run(create_app(), "rules", "-o", "-")
    assert code == 0
    assert (
        yaml.safe_load(printed)["groups"][0]["rules"][0]["record"] == "slo:sli_error:ratio_rate5m"
    )


def test_rules_refuses_an_app_without_objectives(tmp_path: Path) -> None:
    bare = Flask("bare")
    FlaskMetrics(bare, registry=CollectorRegistry())
    code, out = run(bare, "rules", "-o", str(tmp_path / "y.yml"))
    assert code == 1
    assert "declares no service level objective" in out
    assert not (tmp_path / "y.yml").exists()


def test_status_in_process_shows_burn_rates_and_exits_by_status() -> None:
    app = create_app(APPMETRICS_HEALTH_MIN_REQUESTS=5)
    for path in ["/fail"] * 5 + ["/search"] * 15:
        serve(app, path)
    code, out = run(app, "status")
    assert code == 1  # degraded
    assert out.startswith("slo_app (in this process): degraded")
    assert "why: objective 'shop' (availability) burns its error budget 25.0x" in out
    assert (
        "shop (availability): degraded, 99% of requests do not fail with a 5xx "
        "(this process's view)"
    ) in out
    assert "burn rate  5m 25.00x  30m 25.00x  1h 25.00x  6h 25.00x  3d 25.00x" in out
    assert "search (availability): healthy" in out
    code, raw = run(app, "status", "--json")
    assert json.loads(raw)["objectives"][2]["burning"] == ["fast", "slow", "steady"]


@pytest.fixture
def served_app() -> Iterator[tuple[Flask, str]]:
    app = create_app()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_status_reads_a_running_app_with_its_own_token(served_app: tuple[Flask, str]) -> None:
    app, url = served_app
    for _ in range(3):
        serve(app, "/search")  # in this process: the server serves the same app
    code, out = run(app, "status", url)
    assert code == 0, out
    assert out.startswith(f"slo_app at {url}/api/health: healthy")
    assert "search (availability): healthy" in out  # details: the app's token was sent
    code, out = run(app, "status", url, "--token", "wrong-token-but-long-enough")
    assert code == 0
    assert "summary only: details need credentials" in out
    code, out = run(app, "status", url + "/nowhere")
    assert code == 3
    assert "answered 404" in out


def test_status_of_an_unreachable_app(served_app: tuple[Flask, str]) -> None:
    app, _ = served_app
    code, out = run(app, "status", "http://127.0.0.1:9/", "--timeout", "2")
    assert code == 3
    assert "could not reach http://127.0.0.1:9/api/health" in out


def test_routes_lists_our_endpoints_and_their_guard() -> None:
    code, out = run(create_app(APPMETRICS_STATUS_PATH=None), "routes")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PATH", "ENDPOINT", "METHODS", "WHO", "MAY", "READ", "IT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"/metrics", "/api/health", "/livez", "/readyz"}
    assert rows["/metrics"].endswith("needs a bearer token (APPMETRICS_AUTH_TOKEN)")
    assert rows["/api/health"].endswith(
        "summary public; details need a bearer token (APPMETRICS_AUTH_TOKEN)"
    )
    assert rows["/livez"].endswith("public (always)")
    code, out = run(create_app(APPMETRICS_AUTH_TOKEN=None), "routes")
    assert "public (no APPMETRICS_AUTH_* credentials, no auth= decorator)" in out
