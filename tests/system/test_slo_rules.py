"""The rules ``flask appmetrics rules`` writes for an app with declared objectives pass
``promtool check rules``, their generated tests pass ``promtool test rules``, and those
tests catch a broken rule. ``flask appmetrics check`` works from a real command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from example_app import create_app as create_example_app
from flask_appmetrics import FlaskMetrics
from tests.support.slo_app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/system-deps.sh installs it"
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("slo-rules")
    rules = folder / "rules" / "slo.rules.yml"
    tests = folder / "tests" / "slo_test.yml"
    result = (
        create_app()
        .test_cli_runner()
        .invoke(args=["appmetrics", "rules", "-o", str(rules), "--tests", str(tests)])
    )
    assert result.exit_code == 0, result.output
    return rules, tests


@needs_promtool
def test_generated_rules_pass_promtool_and_their_tests_pass(generated: tuple[Path, Path]) -> None:
    rules, tests = generated
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 45 rules found" in checked.stdout  # 3 objectives, 15 rules each
    tested = promtool("test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_rules_restricted_to_a_job_pass_their_tests(tmp_path: Path) -> None:
    rules, tests = tmp_path / "slo.rules.yml", tmp_path / "slo_test.yml"
    result = (
        create_app()
        .test_cli_runner()
        .invoke(args=["appmetrics", "rules", "-o", str(rules), "--job", "shop"])
    )
    assert result.exit_code == 0, result.output
    text = rules.read_text()
    # Every selector, raw or recorded, is the job's.
    assert 'rate(http_requests_total{job="shop",' in text
    assert 'slo:sli_error:ratio_rate1h{job="shop",slo="search",sli="availability"}' in text
    tested = promtool("test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('status=~"5.."', 'status=~"4.."'),  # availability counts the wrong class
        ('le="0.25"', 'le="0.5"'),  # latency read from the wrong bucket
        ("> 14.4", "> 144"),  # the fast burn alert's threshold
        ('method=~"GET|HEAD"', 'method=~"GET|HEAD|POST"'),  # another view's requests counted
    ],
)
def test_the_generated_tests_catch_a_broken_rule(
    generated: tuple[Path, Path], tmp_path: Path, old: str, new: str
) -> None:
    rules, tests = generated
    shutil.copytree(rules.parent.parent, tmp_path / "copy")
    broken = tmp_path / "copy" / "rules" / rules.name
    text = broken.read_text()
    assert old in text
    broken.write_text(text.replace(old, new))
    tested = promtool("test", "rules", tmp_path / "copy" / "tests" / tests.name)
    assert tested.returncode != 0, tested.stdout


def flask_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    flask = Path(sys.executable).with_name("flask")
    return subprocess.run(
        [str(flask), "--app", "tests.support.slo_app:create_app", "appmetrics", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **env},
        check=False,
    )


def test_flask_appmetrics_check_from_the_command_line() -> None:
    done = flask_command("check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the configuration is valid" in done.stdout
    # A configuration that stops the app from loading: the entry point still offers the
    # command, which names the problem and fails.
    done = flask_command("check", SLO_APP_BAD_BUCKETS="1")
    assert done.returncode == 1
    assert "error: the app could not be loaded: ConfigurationError" in done.stderr
    assert "Boundaries (s): 0.1, 1" in done.stderr
    done = flask_command("check", SLO_APP_UNKNOWN_ENDPOINT="1")
    assert done.returncode == 1
    assert "no view of the app has the endpoint 'nope'" in done.stderr


OPS = ROOT / "ops"
OPS_RULES = OPS / "prometheus" / "rules" / "flask_appmetrics.slo.yml"
OPS_TESTS = OPS / "prometheus" / "tests" / "flask_appmetrics_slo_test.yml"


def test_the_ops_kit_holds_the_rules_of_the_example_backends_objectives(tmp_path: Path) -> None:
    """ops/prometheus/*/flask_appmetrics.slo*.yml are what `flask --app example_app
    appmetrics rules` writes today: regenerate them when the objectives change."""
    rules = tmp_path / "rules" / OPS_RULES.name
    tests = tmp_path / "tests" / OPS_TESTS.name
    app = create_example_app(
        {"TESTING": True}, extension=FlaskMetrics(registry=CollectorRegistry())
    )
    result = app.test_cli_runner().invoke(
        args=["appmetrics", "rules", "-o", str(rules), "--tests", str(tests)]
    )
    assert result.exit_code == 0, result.output
    assert rules.read_text() == OPS_RULES.read_text()
    assert tests.read_text() == OPS_TESTS.read_text()


def test_the_dashboard_has_an_slo_row_on_the_recorded_names() -> None:
    dashboard = json.loads((OPS / "grafana" / "dashboard.json").read_text())
    panels = dashboard["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Service level objectives"]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
    exprs = " ".join(t["expr"] for p in below for t in p.get("targets", []))
    recorded = {
        rule["record"]
        for group in yaml.safe_load(OPS_RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for name in (
        "slo:error_budget_remaining:ratio",
        "slo:burn_rate:ratio_rate1h",
        "slo:burn_rate:ratio_rate5m",
        "slo:burn_rate:ratio_rate6h",
        "slo:burn_rate:ratio_rate3d",
    ):
        assert f"{name}{{" in exprs
        assert name in recorded
