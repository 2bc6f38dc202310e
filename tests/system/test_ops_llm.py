"""The operator's kit for the LLM families: their rules and alerts pass promtool and their
unit tests, the tests catch a broken rule, and the dashboard shows every LLM family."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flask_appmetrics.metrics.catalog import CATALOG, SCRAPE_TIME_FAMILIES

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "prometheus" / "rules"
LLM_RULES = sorted(RULES.glob("flask_appmetrics_llm.*.yml"))
LLM_TESTS = OPS / "prometheus" / "tests" / "flask_appmetrics_llm_test.yml"
DASHBOARD = OPS / "grafana" / "dashboard.json"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (scripts/system-deps.sh installs it)"
)

#: Families whose series the kit reads, directly or through a recording rule.
LLM_FAMILIES = sorted(
    {
        spec.name
        for spec in CATALOG
        if spec.name.startswith(("gemini_api_", "gen_ai_")) or spec.name == "quota_refused_total"
    }
    | {f.name for f in SCRAPE_TIME_FAMILIES if f.name.startswith("gemini_api_")}
    | {"quota_learned_limit"}
)


def run_promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert promtool is not None
    return subprocess.run(
        [promtool, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@needs_promtool
def test_llm_rules_pass_promtool_and_their_unit_tests() -> None:
    assert len(LLM_RULES) == 2
    checked = run_promtool("check", "rules", *LLM_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", LLM_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_llm_alert_has_a_firing_test() -> None:
    alerts = {
        rule["alert"]
        for path in LLM_RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fired = {
        test["alertname"]
        for case in yaml.safe_load(LLM_TESTS.read_text())["tests"]
        for test in case.get("alert_rule_test", [])
        if test.get("exp_alerts")
    }
    assert alerts
    assert alerts <= fired, alerts - fired


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("* 24", "* 2"),  # the day's projection from the hourly rate
        ('finish_reason!="STOP"', 'finish_reason="STOP"'),  # blocked answers counted the other way
        ("> 0.8 and", "> 0.9 and"),  # nearly spent from 90% instead of 80%
        (
            "histogram_quantile(0.95,\n            sum by (job, model, le) (rate(gemini_api_time",
            "histogram_quantile(0.5,\n            sum by (job, model, le) (rate(gemini_api_time",
        ),
    ],
)
def test_the_llm_rule_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    shutil.copytree(OPS / "prometheus", tmp_path / "prometheus")
    changed = 0
    for path in (tmp_path / "prometheus" / "rules").glob("flask_appmetrics_llm.*.yml"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))
            changed += 1
    assert changed, old
    done = run_promtool("test", "rules", tmp_path / "prometheus" / "tests" / LLM_TESTS.name)
    assert done.returncode != 0, done.stdout


def test_the_dashboard_shows_every_llm_family() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    rules = {
        rule["record"]: rule["expr"]
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    # What a panel reads, directly or through the recording rules it uses.
    shown = exprs + " " + " ".join(expr for name, expr in rules.items() if name in exprs)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", shown))
    missing = [
        name
        for name in LLM_FAMILIES
        if not {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"} & words
    ]
    assert not missing, missing
    assert "quota_learned_limit" in words
