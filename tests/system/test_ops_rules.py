"""The operator's kit in ops/: Prometheus rules, scrape config and Grafana dashboard.

``promtool`` (Debian's prometheus package, installed by scripts/system-deps.sh) checks the
rules and config and runs the rule unit tests in ops/prometheus/tests/. The PromQL of the
rules and of every dashboard panel may only use names that exist: the metric families
the example app exports on a fresh registry, and the recording rules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from prometheus_client import CollectorRegistry

from example_app import create_app
from flask_appmetrics import FlaskMetrics

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = sorted((OPS / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((OPS / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = OPS / "grafana" / "dashboard.json"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (scripts/system-deps.sh installs it)"
)

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def promql_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names, label values, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # label lists
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function call or a keyword
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a unit of a number literal, e.g. the "m" of 5m
        names.add(name)
    return names


def test_promql_names_parser() -> None:
    expr = (
        'sum by (job, le) (rate(http_request_duration_seconds_bucket{job=~"$job",x="a b"}'
        "[$__rate_interval])) / on (job) group_left(limit) job:quota_usage:ratio > 0.9 "
        "and histogram_quantile(0.95, foo_bucket) * 3600"
    )
    assert promql_names(expr) == {
        "http_request_duration_seconds_bucket",
        "job:quota_usage:ratio",
        "foo_bucket",
    }


def sample_names(registry: CollectorRegistry) -> set[str]:
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """Every sample name the example app can export, from a fresh registry."""
    registry = CollectorRegistry()
    create_app({"TESTING": True}, extension=FlaskMetrics(registry=registry))
    return sample_names(registry)


@pytest.fixture(scope="module")
def library_names() -> set[str]:
    """Every sample name any app gets from the extension alone."""
    registry = CollectorRegistry()
    FlaskMetrics(Flask("plain"), registry=registry)
    return sample_names(registry)


def rule_groups() -> Iterator[dict[str, Any]]:
    for path in RULES:
        yield from yaml.safe_load(path.read_text())["groups"]


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    return exprs


def recording_rules() -> dict[str, str]:
    return {
        rule["record"]: rule["expr"]
        for group in rule_groups()
        for rule in group["rules"]
        if "record" in rule
    }


# -- promtool ------------------------------------------------------------------------------


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
def test_rules_pass_promtool_check() -> None:
    done = run_promtool("check", "rules", *RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_scrape_config_is_valid() -> None:
    done = run_promtool("check", "config", OPS / "prometheus" / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    done = run_promtool("test", "rules", *RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('status=~"5.."', 'status=~"4.."'),  # the error ratio counts the wrong class
        ('result="hit"', 'result="miss"'),  # the hit ratio counts misses
        ('|/status"', '"'),  # the status page's polls count as traffic
        ("|/livez", ""),  # so do the liveness probes
        (">= 0.1", ">= 0"),  # the error alert fires on a handful of requests
        ("== 2", "== 1"),  # the breaker alert fires on half-open instead of open
        ("* 3600", "* 60"),  # cost per minute instead of per hour
        ('status="unhealthy"', 'status="degraded"'),  # alerts on degraded instances
        ("min by (job, check) (health_check_up)", "max by (job, check) (health_check_up)"),
    ],
)
def test_rule_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    """The unit tests can fail: each of these one-token mistakes is caught."""
    shutil.copytree(OPS / "prometheus", tmp_path / "prometheus")
    changed = 0
    for path in (tmp_path / "prometheus" / "rules").glob("*.yml"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))
            changed += 1
    assert changed, old
    tests = sorted((tmp_path / "prometheus" / "tests").glob("*.yml"))
    done = run_promtool("test", "rules", *tests)
    assert done.returncode != 0, done.stdout


# -- names ---------------------------------------------------------------------------------


def test_rules_only_use_exported_names(exported_names: set[str]) -> None:
    known = exported_names | recorded_names() | {"up"}
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = promql_names(rule["expr"]) - known
            assert not unknown, (rule.get("record") or rule.get("alert"), unknown)


def test_rule_names_and_alert_annotations() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" in rule:
                # level:metric:operations (Prometheus' naming practice)
                assert re.fullmatch(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+", rule["record"])
            else:
                assert rule["alert"].startswith("FlaskApp")
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                assert rule["annotations"]["summary"]


def test_every_alert_is_unit_tested() -> None:
    alerts = {
        rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule
    }
    tested = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for alert_test in case.get("alert_rule_test", []):
                if alert_test.get("exp_alerts"):
                    tested.add(alert_test["alertname"])
    untested = alerts - tested
    assert not untested, untested


def test_dashboard_is_grafana_json_using_exported_names(exported_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "flask-appmetrics"
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    known = exported_names | recorded_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    used: set[str] = set()
    for title, expr in exprs:
        names = promql_names(expr)
        assert names, (title, expr)
        assert not names - known, (title, names - known)
        used |= names
    # The dashboard covers the catalog: every family shows up somewhere.
    families = {
        "http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_progress",
        "application_errors_total", "quota_requests_current_minute", "quota_requests_today",
        "quota_tokens_current_minute", "quota_tokens_today", "quota_rpm_remaining",
        "quota_tpm_remaining", "quota_limit", "quota_exceeded_total", "cache_operations_total",
        "cache_hit_rate", "cache_size_bytes", "cache_items_count", "circuit_breaker_state",
        "circuit_breaker_failures_total", "circuit_breaker_successes_total",
        "circuit_breaker_transitions_total", "gemini_api_calls_total",
        "gemini_api_tokens_total", "gemini_api_token_usage_total", "gemini_api_cost_usd_total",
        "concurrent_users", "flask_appmetrics_info", "flask_appmetrics_internal_errors_total",
        "subtopics_generated_total", "explanations_generated_total", "images_generated_total",
        "content_quality_score_sum", "health_check_up", "health_check_duration_seconds",
        "app_health_status",
    }  # fmt: skip
    through_rules = {
        "circuit_breaker_state",
        "gemini_api_cost_usd_total",
        "health_check_up",
        "http_request_duration_seconds_bucket",
    }
    missing = families - used - through_rules
    assert not missing, missing
    # Those are read through recording rules; check the rules do read them.
    rule_exprs = " ".join(rule["expr"] for group in rule_groups() for rule in group["rules"])
    assert through_rules <= promql_names(rule_exprs)


# -- what the HTTP numbers count -----------------------------------------------------------

#: The extension's own endpoints, at their default paths: scrapes, probes, the status page.
OWN_PATH_KEYS = (
    "APPMETRICS_METRICS_PATH",
    "APPMETRICS_HEALTH_PATH",
    "APPMETRICS_LIVEZ_PATH",
    "APPMETRICS_READYZ_PATH",
    "APPMETRICS_STATUS_PATH",
)
#: The recording rules that select the app's own traffic; every other HTTP number reads them.
FILTERED = (
    "job_endpoint_status:http_requests:rate5m",
    "job_endpoint_le:http_request_duration_seconds_bucket:rate5m",
)
RAW_HTTP = {"http_requests_total", "http_request_duration_seconds_bucket"}
#: Dashboard panels that show every request on purpose (what scrapes and probes cost).
WHOLE_TRAFFIC_PANELS = {"Request rate by endpoint", "Responses by status"}


def own_endpoints_matcher() -> str:
    from flask_appmetrics.config import DEFAULTS

    return 'endpoint!~"' + "|".join(str(DEFAULTS[key]) for key in OWN_PATH_KEYS) + '"'


def reads_filtered_traffic(
    name: str, rules: dict[str, str], seen: frozenset[str] = frozenset()
) -> bool:
    """Whether recorded *name* reaches the raw HTTP metrics only through FILTERED."""
    if name in FILTERED:
        return True
    used = promql_names(rules[name])
    if used & RAW_HTTP:
        return False
    return all(
        reads_filtered_traffic(n, rules, seen | {name})
        for n in used
        if n in rules and n not in seen
    )


def test_the_own_endpoints_are_left_out_in_one_place_with_the_default_paths() -> None:
    from flask_appmetrics.config import DEFAULTS

    rules = recording_rules()
    matcher = own_endpoints_matcher()
    for name in FILTERED:
        assert matcher in rules[name], (name, matcher)
    own = {str(DEFAULTS[key]) for key in OWN_PATH_KEYS}
    kit_rules = yaml.safe_load((OPS / "prometheus/rules/flask_appmetrics.rules.yml").read_text())
    kit = {rule["record"] for group in kit_rules["groups"] for rule in group["rules"]}
    for group in rule_groups():
        for rule in group["rules"]:
            name = rule.get("record") or rule["alert"]
            if name in FILTERED:
                continue
            # The kit's other HTTP rules go through the two above; rules generated for
            # objectives select their endpoints by name, never the extension's own.
            if name in kit:
                assert not promql_names(rule["expr"]) & RAW_HTTP, name
            raw = r"(?<![\w:])(?:" + "|".join(RAW_HTTP) + r")(?![\w:])(\{[^}]*\})?"
            selectors = re.findall(raw, rule["expr"])
            for labels in selectors:
                chosen = re.search(r'endpoint=~?"([^"]*)"', labels)
                assert chosen, (name, labels)
                assert not set(chosen.group(1).split("|")) & own, (name, labels)


def test_every_dashboard_latency_and_error_panel_counts_the_same_requests() -> None:
    rules = recording_rules()
    dashboard = json.loads(DASHBOARD.read_text())
    http_panels = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = promql_names(target["expr"])
            if names & RAW_HTTP:
                assert panel["title"] in WHOLE_TRAFFIC_PANELS, (panel["title"], target["expr"])
                continue
            for name in names & {n for n in rules if n.endswith(("_5m", "_rate5m"))}:
                if "http" in name:
                    assert reads_filtered_traffic(name, rules), (panel["title"], name)
                    http_panels += 1
    latency = next(p for p in dashboard["panels"] if p["title"].startswith("Latency p50"))
    quantiles = [promql_names(t["expr"]) for t in latency["targets"]]
    assert quantiles == [
        {f"job:http_request_duration_seconds:{q}_5m"} for q in ("p50", "p95", "p99")
    ]
    assert http_panels >= 5


def test_cost_today_counts_from_midnight_of_the_dashboard_time_zone() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"].startswith("Cost today")]
    # Grafana's "today so far": the panel's range starts at midnight, the query spans it.
    assert panel["timeFrom"] == "now/d"
    (target,) = panel["targets"]
    assert "[$__range]" in target["expr"]
    assert "increase(" in target["expr"]
    assert target.get("instant") is True
    assert dashboard["timezone"] == "browser"
    assert "time zone" in panel["description"]
    assert "now/d" in (OPS / "README.md").read_text()


def test_only_the_example_row_uses_the_example_apps_own_metrics(library_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = library_names | recorded_names()
    rows = sorted(
        (p for p in dashboard["panels"] if p["type"] == "row"), key=lambda p: p["gridPos"]["y"]
    )
    example_rows = [row for row in rows if "example app" in row["title"]]
    assert len(example_rows) == 1, [row["title"] for row in rows]
    foreign = 0
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        names = set().union(*(promql_names(t["expr"]) for t in panel.get("targets", [])))
        if names - known:
            foreign += 1
            row = [r for r in rows if r["gridPos"]["y"] < panel["gridPos"]["y"]][-1]
            assert row is example_rows[0], (panel["title"], names - known)
            assert "example app" in panel["description"], panel["title"]
    assert foreign >= 2
    assert "business row is the example app" in (OPS / "README.md").read_text()


# -- configuration named in the kit ----------------------------------------------------------


def test_the_kit_names_only_configuration_keys_that_exist() -> None:
    from flask_appmetrics.config import DEFAULTS

    named: set[str] = set()
    for path in OPS.rglob("*"):
        if path.is_file():
            named |= set(re.findall(r"\bAPPMETRICS_[A-Z][A-Z0-9_]*", path.read_text()))
    assert "APPMETRICS_AUTH_TOKEN" in named
    unknown = named - set(DEFAULTS)
    assert not unknown, unknown


@needs_promtool
@pytest.mark.parametrize("block", ["authorization:", "basic_auth:"])
def test_the_commented_auth_blocks_of_the_scrape_config_are_valid(
    tmp_path: Path, block: str
) -> None:
    """Uncommented as the comment says, each auth block is valid Prometheus configuration."""
    shutil.copytree(OPS / "prometheus", tmp_path / "prometheus")
    config = tmp_path / "prometheus" / "prometheus.yml"
    lines = config.read_text().splitlines()
    start = lines.index(f"    # {block}")
    end = start + 1
    while end < len(lines) and lines[end].startswith("    #   "):
        end += 1
    assert end - start >= 3
    lines[start:end] = [line.replace("    # ", "    ", 1) for line in lines[start:end]]
    config.write_text("\n".join(lines) + "\n")
    done = run_promtool("check", "config", "--syntax-only", config)
    assert done.returncode == 0, done.stdout + done.stderr


# -- _created series -------------------------------------------------------------------------

_PAGE = """
from prometheus_client import CollectorRegistry, generate_latest
from example_app import create_app
from flask_appmetrics import FlaskMetrics
registry = CollectorRegistry()
app = create_app({"TESTING": True}, extension=FlaskMetrics(registry=registry))
app.test_client().post("/api/generate", json={"topic": "x"})
print(generate_latest(registry).decode())
"""


@pytest.mark.parametrize("disabled", [False, True])
def test_created_series_leave_the_page_as_the_kit_says(disabled: bool) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if disabled:
        env["PROMETHEUS_DISABLE_CREATED_SERIES"] = "True"
    done = subprocess.run(
        [sys.executable, "-c", _PAGE],
        capture_output=True,
        text=True,
        env=env,
        cwd=OPS.parent,
        timeout=120,
        check=True,
    )
    samples = [s for f in text_string_to_metric_families(done.stdout) for s in f.samples]
    created = [s for s in samples if s.name.endswith("_created")]
    totals = [s for s in samples if s.name == "http_requests_total"]
    assert totals
    assert (not created) if disabled else (len(created) * 5 > len(samples)), len(created)
    assert "PROMETHEUS_DISABLE_CREATED_SERIES=True" in (OPS / "README.md").read_text()


@needs_promtool
def test_example_metrics_page_lints_clean_but_for_cache_items_count() -> None:
    """The business metrics the example declares follow Prometheus naming too; the one
    complaint is ``cache_items_count`` (``_count`` is reserved), kept by design."""
    registry = CollectorRegistry()
    app = create_app({"TESTING": True}, extension=FlaskMetrics(registry=registry))
    client = app.test_client()
    client.post("/api/generate", json={"topic": "lint"})
    client.post("/api/images", json={"topic": "lint"})
    page = client.get("/metrics").get_data()
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "metrics"], input=page, capture_output=True, timeout=60, check=False
    )
    problems = [line for line in (done.stdout + done.stderr).decode().splitlines() if line.strip()]
    assert problems, "expected the cache_items_count complaint"
    assert all(line.startswith("cache_items_count ") for line in problems), problems


@needs_promtool
def test_internal_errors_alert_fires_on_the_first_failure_as_the_app_exports_it(
    tmp_path: Path,
) -> None:
    """The alert's unit test, fed with what a real app exports: scrapes before any failure,
    then after the first one. A counter that only appears with its first failure would give
    ``increase()`` nothing to compare with, and the alert would stay silent."""
    registry = CollectorRegistry()

    def broken_identity() -> str:
        raise RuntimeError("identity backend down")

    app = Flask("ops_app")
    FlaskMetrics(app, registry=registry, user_identity=broken_identity)

    @app.get("/")
    def index() -> str:
        return "ok"

    labels = {"component": "user_identity"}

    def scrape() -> str:
        value = registry.get_sample_value("flask_appmetrics_internal_errors_total", labels)
        return "_" if value is None else repr(value)  # "_": no sample in this scrape

    before = scrape()
    response = app.test_client().get("/")
    response.close()
    after = scrape()
    assert after == "1.0"
    # Two scrapes before the app existed, three after start, then the failure.
    values = " ".join(["_", "_", before, before, before, after, after, after])
    case = {
        "rule_files": [str(path) for path in RULES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'flask_appmetrics_internal_errors_total{job="app",'
                        'component="user_identity"}',
                        "values": values,
                    }
                ],
                "alert_rule_test": [
                    {
                        "alertname": "FlaskAppMetricsInternalErrors",
                        "eval_time": "6m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "app",
                                    "component": "user_identity",
                                    "severity": "info",
                                },
                                "exp_annotations": {
                                    "summary": "app: flask-appmetrics failed in user_identity",
                                    "description": "The extension caught an error of its own "
                                    "(requests were unaffected); see the app's log.",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "first_failure_test.yml"
    test_file.write_text(yaml.safe_dump(case))
    done = run_promtool("test", "rules", test_file)
    assert done.returncode == 0, f"series {values!r}:\n{done.stdout}{done.stderr}"
