"""Prometheus recording and alerting rules for an app's objectives, and their unit tests.

``flask appmetrics rules`` writes both files. For each objective, one rule group:

* ``slo:sli_error:ratio_rate<w>``: the bad share of its requests over each alerting window
  (5m, 30m, 1h, 6h, 3d) and over the whole period (30d by default), per ``job``, labelled
  ``slo`` (the objective's name) and ``sli`` (``availability`` or ``latency``);
* ``slo:burn_rate:ratio_rate<w>``: the same divided by the error budget;
* ``slo:error_budget_remaining:ratio``: the share of the period's budget left;
* the alerts of :data:`~flask_appmetrics.slo.burn.BURN_ALERTS`: ``FlaskAppSLOFastBurn``
  and ``FlaskAppSLOSlowBurn`` (``severity: critical``, page) and ``FlaskAppSLOSteadyBurn``
  (``severity: warning``, ticket).

Availability counts ``http_requests_total`` with a 5xx status; latency counts the
requests of ``http_request_duration_seconds`` above the threshold's bucket (``le``).
Every name and label is the same for every objective, so one dashboard serves them all
(the ops kit's SLO row reads ``slo:error_budget_remaining:ratio`` and
``slo:burn_rate:*``).

The test file feeds each objective's selector with synthetic traffic that burns its
budget at chosen rates (within budget, a steady, slow and fast burn, and a fast burn
that has stopped) and expects exactly the alerts the table says, plus the burn rate and
budget the recording rules compute. Unrelated traffic that fails (another route, the
extension's own endpoints) runs beside it and must change nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

from .burn import BURN_ALERTS, BurnAlert, burn_windows, duration
from .objectives import Objective, bucket_boundary, format_seconds
from .routes import ResolvedObjective, Selection

#: The job label of the generated tests' series when the rules select no job.
TEST_JOB = "app"
#: Requests per minute of the generated test traffic.
_RATE = 1000.0
#: Minutes of test traffic; when the alerts are evaluated (a window longer than the
#: traffic sees the ratio of all of it); when the fast burn of "stopped" stops (its
#: short window is clean by the evaluation); how often promtool evaluates the rules.
_MINUTES = 40
_EVAL = "35m"
_STOP = 25
_EVALUATION_INTERVAL = "5m"
#: A route no objective counts, for the tests' unrelated traffic.
_UNCOVERED = "/uncovered-by-any-objective"
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


@dataclass(frozen=True)
class RuleOptions:
    """How rules are generated.

    :param period_seconds: the objectives' rolling period.
    :param buckets: the boundaries of ``http_request_duration_seconds``.
    :param job: restrict every selector to this ``job`` (when several apps share a
        Prometheus, so that their rules do not record the same series).
    :param app_name: named in the files' header.
    """

    period_seconds: float
    buckets: tuple[float, ...]
    job: str | None = None
    app_name: str = "app"


# -- PromQL ---------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """A PromQL string literal (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex(values: Sequence[str]) -> str:
    """An RE2 alternation matching exactly *values*."""
    return "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in values)


def _endpoint_matcher(endpoints: Sequence[str]) -> str:
    if len(endpoints) == 1:
        return f"endpoint={_quote(endpoints[0])}"
    return f"endpoint=~{_quote(_regex(endpoints))}"


def selectors(selection: Selection, job: str | None) -> tuple[str, ...]:
    """The label matchers (inside ``{}``) that together select *selection*'s requests."""
    pieces: list[str] = []
    if selection.include is None:
        pieces.append(f"endpoint!~{_quote(_regex(selection.exclude))}" if selection.exclude else "")
    else:
        every = [m.endpoint for m in selection.include if m.methods is None]
        if every:
            pieces.append(_endpoint_matcher(every))
        for match in selection.include:
            if match.methods is not None:
                pieces.append(
                    f"endpoint={_quote(match.endpoint)},method=~{_quote(_regex(match.methods))}"
                )
    if job is not None:
        pieces = [",".join(p for p in (f"job={_quote(job)}", piece) if p) for piece in pieces]
    return tuple(pieces)


def _rate(metric: str, pieces: Sequence[str], extra: str, window: str) -> str:
    terms = [
        f"rate({metric}{{{','.join(p for p in (piece, extra) if p)}}}[{window}])"
        for piece in pieces
    ]
    return f"sum by (job) ({' or '.join(terms)})"


def le_value(objective: Objective, buckets: Sequence[float]) -> str:
    """The ``le`` label of the bucket at the objective's latency threshold."""
    assert objective.threshold_seconds is not None
    bound = bucket_boundary(objective.threshold_seconds, buckets)
    if bound is None:
        raise ValueError(f"{format_seconds(objective.threshold_seconds)} is not a bucket boundary")
    le: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return le


def error_ratio_expr(resolved: ResolvedObjective, window: str, options: RuleOptions) -> str:
    """The bad share of the objective's requests over *window*, per job."""
    pieces = selectors(resolved.selection, options.job)
    objective = resolved.objective
    if objective.threshold_seconds is not None:
        le = f"le={_quote(le_value(objective, options.buckets))}"
        good = _rate("http_request_duration_seconds_bucket", pieces, le, window)
        total = _rate("http_request_duration_seconds_count", pieces, "", window)
        return f"1 - (\n  {good}\n  /\n  {total}\n)"
    bad = _rate("http_requests_total", pieces, 'status=~"5.."', window)
    total = _rate("http_requests_total", pieces, "", window)
    # No 5xx at all leaves the numerator without series: "or 0 * total" keeps the
    # ratio at 0 instead of absent.
    return f"(\n  {bad}\n  or\n  0 * {total}\n)\n/\n{total}"


def _number(value: float) -> str:
    return format(round(value, 12), ".12g")


def _static_labels(objective: Objective) -> dict[str, str]:
    return {"slo": objective.name, "sli": objective.sli}


def _labels_of(objective: Objective, options: RuleOptions) -> str:
    """Matchers of the objective's recorded series (of its job only, with ``--job``: the
    rules of another app must not read, or record again, series of this one)."""
    job = f"job={_quote(options.job)}," if options.job is not None else ""
    return f"{job}slo={_quote(objective.name)},sli={_quote(objective.sli)}"


# -- the rules -----------------------------------------------------------------------------


def _windows(options: RuleOptions) -> tuple[str, ...]:
    return (*(duration(s) for s in burn_windows()), duration(options.period_seconds))


def _alert_rule(alert: BurnAlert, objective: Objective, options: RuleOptions) -> dict[str, Any]:
    threshold = _number(alert.threshold(options.period_seconds))
    labels = _labels_of(objective, options)
    long, short = duration(alert.long_seconds), duration(alert.short_seconds)
    return {
        "alert": alert.alert_name,
        "expr": f"slo:burn_rate:ratio_rate{long}{{{labels}}} > {threshold}\nand\n"
        f"slo:burn_rate:ratio_rate{short}{{{labels}}} > {threshold}",
        # The objective's labels again: without them promtool's lint sees the same alert
        # in every objective's group as a duplicate.
        "labels": {"severity": alert.severity, **_static_labels(objective)},
        "annotations": _annotations(alert, objective, options),
    }


def _annotations(alert: BurnAlert, objective: Objective, options: RuleOptions) -> dict[str, str]:
    period = duration(options.period_seconds)
    threshold = _number(alert.threshold(options.period_seconds))
    long, short = duration(alert.long_seconds), duration(alert.short_seconds)
    return {
        "summary": f"{{{{ $labels.job }}}}: objective {objective.name} ({objective.sli}) "
        f"burns its error budget {threshold}x too fast",
        "description": f"{objective.describe()} over {period}. Over the last {long} and "
        f"{short} the error budget burned faster than {threshold}x: "
        f"{_number(alert.budget_share * 100)}% of the {period} budget gone in {long} "
        f"({alert.action}).",
    }


def rule_group(resolved: ResolvedObjective, options: RuleOptions) -> dict[str, Any]:
    """The recording and alerting rules of one objective."""
    objective = resolved.objective
    labels = _labels_of(objective, options)
    budget = _number(objective.budget)
    period = duration(options.period_seconds)
    rules: list[dict[str, Any]] = [
        {
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": error_ratio_expr(resolved, window, options),
            "labels": _static_labels(objective),
        }
        for window in _windows(options)
    ]
    rules += [
        {
            "record": f"slo:burn_rate:ratio_rate{window}",
            "expr": f"slo:sli_error:ratio_rate{window}{{{labels}}} / {budget}",
            "labels": _static_labels(objective),
        }
        for window in _windows(options)[:-1]
    ]
    rules.append(
        {
            "record": "slo:error_budget_remaining:ratio",
            "expr": f"1 - slo:sli_error:ratio_rate{period}{{{labels}}} / {budget}",
            "labels": _static_labels(objective),
        }
    )
    rules += [_alert_rule(alert, objective, options) for alert in BURN_ALERTS]
    return {"name": f"flask_appmetrics.slo.{objective.name}.{objective.sli}", "rules": rules}


def rules_document(objectives: Sequence[ResolvedObjective], options: RuleOptions) -> dict[str, Any]:
    """The rule file: one group per objective."""
    return {"groups": [rule_group(resolved, options) for resolved in objectives]}


# -- the tests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """One input series of a test: a counter rising by *rate* per minute, or by *rate*
    until minute *stops_after* and by *then* from there on."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    rate: float
    stops_after: int | None = None
    then: float = 0.0

    def series(self) -> str:
        inside = ",".join(f"{k}={_quote(v)}" for k, v in self.labels)
        return f"{self.metric}{{{inside}}}"

    def values(self) -> str:
        if self.stops_after is None:
            return f"0+{_number(self.rate)}x{_MINUTES}"
        after = self.stops_after
        reached = self.rate * after + self.then
        return (
            f"0+{_number(self.rate)}x{after} "
            f"{_number(reached)}+{_number(self.then)}x{_MINUTES - after - 1}"
        )

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


def _sample_labels(selection: Selection, job: str) -> tuple[dict[str, str], dict[str, str] | None]:
    """Labels of requests the objective counts, and of requests it must not count."""
    if selection.include is None:
        endpoint = "/" if "/" not in selection.exclude else _UNCOVERED
        counted = {"job": job, "method": "GET", "endpoint": endpoint}
        ignored = (
            {"job": job, "method": "GET", "endpoint": selection.exclude[0]}
            if selection.exclude
            else None
        )
        return counted, ignored
    first = selection.include[0]
    method = first.methods[0] if first.methods else "GET"
    counted = {"job": job, "method": method, "endpoint": first.endpoint}
    if first.methods is not None:
        # The same route under a method of another view: not this objective's.
        others = [m for m in ("POST", "PUT", "DELETE", "PATCH", "GET") if m not in first.methods]
        return counted, {**counted, "method": others[0]}
    return counted, {"job": job, "method": "GET", "endpoint": _UNCOVERED}


def _inputs(
    objective: Objective,
    labels: dict[str, str],
    good: float,
    bad: float,
    options: RuleOptions,
    *,
    stops_after: int | None = None,
) -> list[_Input]:
    """Series of *good* and *bad* requests per minute on *labels* (after *stops_after*
    minutes, every request is good)."""
    then = good + bad
    if objective.threshold_seconds is None:
        return [
            _Input("http_requests_total", (*labels.items(), ("status", "500")), bad, stops_after),
            _Input(
                "http_requests_total", (*labels.items(), ("status", "200")), good, stops_after, then
            ),
        ]
    le = le_value(objective, options.buckets)
    return [
        _Input(
            "http_request_duration_seconds_bucket",
            (*labels.items(), ("le", le)),
            good,
            stops_after,
            then,
        ),
        _Input("http_request_duration_seconds_count", tuple(labels.items()), good + bad),
    ]


def _bad_ratio(
    resolved: ResolvedObjective, inputs: Sequence[_Input], options: RuleOptions
) -> float | None:
    """The bad share *resolved*'s rules compute from steady *inputs*; ``None`` when they
    select none of them (no ratio is recorded)."""
    objective = resolved.objective

    def selected(item: _Input) -> bool:
        method, endpoint = item.label("method"), item.label("endpoint")
        job_ok = options.job is None or item.label("job") == options.job
        return job_ok and resolved.selection.matches(method or "", endpoint or "")

    if objective.threshold_seconds is None:
        mine = [i for i in inputs if i.metric == "http_requests_total" and selected(i)]
        total = sum(i.rate for i in mine)
        bad = sum(i.rate for i in mine if (i.label("status") or "").startswith("5"))
        return bad / total if total else None
    le = le_value(objective, options.buckets)
    counts = [
        i for i in inputs if i.metric == "http_request_duration_seconds_count" and selected(i)
    ]
    within = [
        i
        for i in inputs
        if i.metric == "http_request_duration_seconds_bucket"
        and i.label("le") == le
        and selected(i)
    ]
    total = sum(i.rate for i in counts)
    if not total or not within:
        return None
    return 1.0 - sum(i.rate for i in within) / total


@dataclass(frozen=True)
class _Scenario:
    title: str
    burn: float
    stops_after: int | None = None


def _scenarios(objective: Objective, period_seconds: float) -> Iterator[_Scenario]:
    """Burn rates halfway between the alert thresholds, so that each alert fires in one
    scenario and those above it do not; then a fast burn that has stopped."""
    ceiling = 1.0 / objective.budget  # every request bad
    thresholds = [alert.threshold(period_seconds) for alert in reversed(BURN_ALERTS)]
    names = [alert.name for alert in reversed(BURN_ALERTS)]
    yield _Scenario("within budget", thresholds[0] / 2)
    for index, low in enumerate(thresholds):
        if low >= ceiling:
            return  # no traffic can burn this fast: the alert cannot fire
        high = thresholds[index + 1] if index + 1 < len(thresholds) else low * 1.5
        burn = (low + min(high, ceiling)) / 2
        yield _Scenario(f"{names[index]} burn", burn)
        if index + 1 == len(thresholds):
            yield _Scenario("fast burn that stopped", burn, stops_after=_STOP)


def _alert_test(
    alert: BurnAlert, firing: Sequence[Objective], job: str, options: RuleOptions
) -> dict[str, Any]:
    return {
        "alertname": alert.alert_name,
        "eval_time": _EVAL,
        "exp_alerts": [
            {
                "exp_labels": {
                    "job": job,
                    "severity": alert.severity,
                    "slo": objective.name,
                    "sli": objective.sli,
                },
                "exp_annotations": {
                    key: value.replace("{{ $labels.job }}", job)
                    for key, value in _annotations(alert, objective, options).items()
                },
            }
            for objective in firing
        ],
    }


def _close_to(expr: str, value: float, labels: dict[str, str]) -> dict[str, Any]:
    """An expression test that *expr* is within a millionth of *value*."""
    inside = ",".join(f"{k}={_quote(v)}" for k, v in labels.items())
    difference = f"{expr} + {_number(-value)}" if value < 0 else f"{expr} - {_number(value)}"
    return {
        "expr": f"abs({difference}) < bool 0.000001",
        "eval_time": _EVAL,
        "exp_samples": [{"labels": f"{{{inside}}}", "value": 1}],
    }


def _test_case(
    resolved: ResolvedObjective,
    scenario: _Scenario,
    everyone: Sequence[ResolvedObjective],
    options: RuleOptions,
) -> dict[str, Any]:
    objective = resolved.objective
    job = options.job or TEST_JOB
    counted, ignored = _sample_labels(resolved.selection, job)
    bad = scenario.burn * objective.budget * _RATE
    inputs = _inputs(
        objective, counted, _RATE - bad, bad, options, stops_after=scenario.stops_after
    )
    if scenario.stops_after is not None:
        # Only the fast alert is asked about: its short window is clean again.
        return {
            "name": f"{objective.name} ({objective.sli}): {scenario.title}",
            "interval": "1m",
            "input_series": [{"series": i.series(), "values": i.values()} for i in inputs],
            "alert_rule_test": [_alert_test(BURN_ALERTS[0], (), job, options)],
        }
    if objective.threshold_seconds is None:
        # Client errors are not the app's failures: a share of the good requests are 404s.
        inputs[1] = _Input(inputs[1].metric, inputs[1].labels, _RATE * 0.9 - bad)
        inputs.append(
            _Input("http_requests_total", (*counted.items(), ("status", "404")), _RATE / 10)
        )
    if ignored is not None:
        inputs += _inputs(objective, ignored, 0.0, _RATE, options)
    # Every objective the traffic reaches burns at its own rate (an objective over the
    # whole app sees the others' routes): the alerts expected are all of theirs.
    firing: dict[str, list[Objective]] = {alert.name: [] for alert in BURN_ALERTS}
    undecided: set[str] = set()
    for other in everyone:
        ratio = _bad_ratio(other, inputs, options)
        if ratio is None:
            continue
        burn = ratio / other.objective.budget
        for alert in BURN_ALERTS:
            threshold = alert.threshold(options.period_seconds)
            if abs(burn - threshold) < 1e-6 * threshold:
                undecided.add(alert.name)  # too close to call through float rounding
            elif burn > threshold:
                firing[alert.name].append(other.objective)
    alert_tests = [
        _alert_test(alert, firing[alert.name], job, options)
        for alert in BURN_ALERTS
        if alert.name not in undecided
    ]
    labels = {"job": job, "slo": objective.name, "sli": objective.sli}
    selector = f"{{{_labels_of(objective, options)}}}"
    return {
        "name": f"{objective.name} ({objective.sli}): {scenario.title}",
        "interval": "1m",
        "input_series": [{"series": i.series(), "values": i.values()} for i in inputs],
        "alert_rule_test": alert_tests,
        "promql_expr_test": [
            _close_to(f"slo:burn_rate:ratio_rate1h{selector}", scenario.burn, labels),
            _close_to(f"slo:error_budget_remaining:ratio{selector}", 1.0 - scenario.burn, labels),
        ],
    }


def rule_tests_document(
    objectives: Sequence[ResolvedObjective], rules_path: str, options: RuleOptions
) -> dict[str, Any]:
    """The ``promtool test rules`` file of the rules at *rules_path* (relative to it)."""
    return {
        "rule_files": [rules_path],
        "evaluation_interval": _EVALUATION_INTERVAL,
        "tests": [
            _test_case(resolved, scenario, objectives, options)
            for resolved in objectives
            for scenario in _scenarios(resolved.objective, options.period_seconds)
        ],
    }


# -- YAML ------------------------------------------------------------------------------------

#: Plain YAML scalars that read back as the same string (anything else is double-quoted).
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*|[0-9]+[smhd]")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(float(value)) if isinstance(value, float) else str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    if '"' in text and "\n" not in text:
        # Single quotes read better around PromQL's double quotes ('' is a quote).
        return "'" + text.replace("'", "''") + "'"
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(text, ensure_ascii=False)


def _yaml(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, str) and "\n" in item:
                lines.append(f"{head} |-")
                lines += [f"{pad}  {line}" if line else "" for line in item.split("\n")]
            elif isinstance(item, (dict, list)) and item:
                lines.append(head)
                lines += _yaml(item, indent + 2)
            elif isinstance(item, (dict, list)):
                lines.append(f"{head} {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{head} {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def to_yaml(document: dict[str, Any], header: Sequence[str] = ()) -> str:
    """*document* as block-style YAML, after *header* as comment lines."""
    comments = [f"# {line}".rstrip() for line in header]
    return "\n".join([*comments, *_yaml(document, 0)]) + "\n"


def relative_rules_path(rules_file: str, tests_file: str) -> str:
    """How the test file names the rule file: relative to the test file's folder, as
    ``promtool test rules`` resolves it."""
    folder = os.path.dirname(os.path.abspath(tests_file))
    return os.path.relpath(os.path.abspath(rules_file), folder).replace(os.sep, "/")


def header(options: RuleOptions, what: str) -> list[str]:
    period = duration(options.period_seconds)
    lines = [
        f"{what} for the service level objectives of the Flask app {options.app_name!r}",
        f"(rolling {period}), written by `flask appmetrics rules`.",
        "Declare objectives in the app (@metrics.slo, APPMETRICS_SLOS) and generate again",
        "rather than editing this file.",
    ]
    if what == "Recording and alerting rules":
        lines += [
            "",
            "Alerts (Google SRE workbook, multiwindow multi-burn-rate):",
            *(
                f"  {alert.alert_name}: burn rate > "
                f"{_number(alert.threshold(options.period_seconds))}x over "
                f"{duration(alert.long_seconds)} and {duration(alert.short_seconds)} "
                f"({alert.severity}, {alert.action})"
                for alert in BURN_ALERTS
            ),
        ]
    return lines
