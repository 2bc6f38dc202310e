"""``flask appmetrics``: the extension's command group, registered the Flask way.

``init_app`` adds it to ``app.cli``, and the package's ``flask.commands`` entry point
offers it to every ``flask`` command line, so that ``flask appmetrics check`` can report
an app whose configuration stops it from loading.

* ``check``: validate the ``APPMETRICS_*`` configuration and the service level
  objectives, print the effective settings; exit 1 on any error (for CI).
* ``rules``: write the objectives' Prometheus recording and alerting rules, and their
  ``promtool test rules`` cases beside them.
* ``status``: print the health report of a running app (its URL), or of the app
  in this process; exit 0 healthy, 1 degraded, 2 unhealthy, 3 unreachable.
* ``routes``: the extension's endpoints and what guards each.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from base64 import b64encode
from typing import Any, Literal
from urllib.parse import urlsplit

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from .._version import __version__
from ..app_state import AppState, state_of
from ..slo.burn import duration
from ..slo.rules import (
    RuleOptions,
    header,
    relative_rules_path,
    rule_tests_document,
    rules_document,
    to_yaml,
)
from ..web.guard import Resource
from .health_view import UNKNOWN, exit_code, render
from .settings_view import alert_lines, check_app, effective_settings

appmetrics = AppGroup(
    "appmetrics",
    help="flask-appmetrics: check the configuration, write the objectives' Prometheus "
    "rules, print an app's health, list the extension's routes.",
)

#: Default file names of ``rules``.
DEFAULT_RULES_FILE = "flask_appmetrics_slo.rules.yml"


def _state(app: Flask) -> AppState:
    state = state_of(app)
    if state is None:
        raise click.ClickException(
            f"flask-appmetrics is not initialised on app {app.name!r}: call "
            "FlaskMetrics().init_app(app) in the app factory"
        )
    return state


def _error(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)


@appmetrics.command("check", with_appcontext=False)
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the APPMETRICS_* configuration and the objectives; print the settings.

    Exits 1 when the app cannot load with its configuration, or an objective cannot be
    used; warnings do not fail the check.
    """
    info = ctx.ensure_object(ScriptInfo)
    try:
        app = info.load_app()
    except Exception as exc:  # the app's own factory: whatever it raises is the report
        _error(f"the app could not be loaded: {type(exc).__name__}: {exc}")
        ctx.exit(1)
    state = state_of(app)
    if state is None:
        _error(f"flask-appmetrics is not initialised on app {app.name!r}")
        ctx.exit(1)
    assert state is not None
    with app.app_context():
        report = check_app(app.config, state)
    click.echo(f"flask-appmetrics {__version__} on app {app.name!r}")
    click.echo("\nEffective settings:")
    for key, value in effective_settings(app.config):
        click.echo(f"  {key} = {value}")
    period = state.slo.period_seconds
    click.echo(f"\nService level objectives (rolling {duration(period)}):")
    for line in report.objectives or ["none declared"]:
        click.echo(f"  {line}")
    if report.objectives:
        click.echo("Alerts written by `flask appmetrics rules`:")
        for line in alert_lines(period):
            click.echo(f"  {line}")
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    for error in report.errors:
        _error(error)
    if report.errors:
        click.echo(f"\nFAILED: {len(report.errors)} error(s)")
        ctx.exit(1)
    click.echo("\nOK: the configuration is valid")


@appmetrics.command("rules")
@click.option(
    "-o",
    "--output",
    default=DEFAULT_RULES_FILE,
    show_default=True,
    help="The rule file to write ('-' prints it).",
)
@click.option(
    "--tests",
    "tests_file",
    default=None,
    help="The promtool test file to write [default: beside the rules, *_test.yml].",
)
@click.option("--no-tests", is_flag=True, help="Write the rules only.")
@click.option(
    "--job",
    default=None,
    help="Select only this Prometheus job (when several apps share a Prometheus).",
)
def rules(output: str, tests_file: str | None, no_tests: bool, job: str | None) -> None:
    """Write Prometheus rules for the app's service level objectives.

    Recording rules (error ratios, burn rates, the budget left) and multiwindow,
    multi-burn-rate alerts for every objective, and promtool unit tests for them:
    check them with `promtool check rules` and `promtool test rules`.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state(app)
    resolution = state.slo.resolution()
    for problem in resolution.problems:
        _error(problem)
    if resolution.problems:
        raise click.ClickException("fix the objectives above first (flask appmetrics check)")
    if not resolution.objectives:
        raise click.ClickException(
            "the app declares no service level objective (@metrics.slo, APPMETRICS_SLOS)"
        )
    options = RuleOptions(
        period_seconds=state.slo.period_seconds,
        buckets=state.settings.http.buckets,
        job=job,
        app_name=app.name,
    )
    objectives = resolution.objectives
    text = to_yaml(
        rules_document(objectives, options), header(options, "Recording and alerting rules")
    )
    if output == "-":
        click.echo(text, nl=False)
    else:
        _write(output, text)
        count = sum(len(g["rules"]) for g in rules_document(objectives, options)["groups"])
        click.echo(f"wrote {output}: {len(objectives)} objective(s), {count} rules", err=True)
    if no_tests or (output == "-" and tests_file is None):
        return
    if tests_file is None:
        stem = output.removesuffix(".yml").removesuffix(".yaml").removesuffix(".rules")
        tests_file = f"{stem}_test.yml"
    rules_path = relative_rules_path(output, tests_file)
    document = rule_tests_document(objectives, rules_path, options)
    _write(tests_file, to_yaml(document, header(options, "promtool unit tests")))
    click.echo(f"wrote {tests_file}: {len(document['tests'])} test cases", err=True)
    click.echo(
        f"check: promtool check rules {output} && promtool test rules {tests_file}", err=True
    )


def _write(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


@appmetrics.command("status")
@click.argument("url", required=False)
@click.option(
    "--token", default=None, help="Bearer token [default: the app's APPMETRICS_AUTH_TOKEN]."
)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the app.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON.")
def status(url: str | None, token: str | None, timeout: float, as_json: bool) -> None:
    """Print the health report of the app running at URL, or of this process's app.

    URL is the app's base URL (its APPMETRICS_HEALTH_PATH is added) or the health
    endpoint itself. Credentials default to the app's own APPMETRICS_AUTH_*. Exits 0
    when healthy, 1 degraded, 2 unhealthy, 3 when no report could be read.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state(app)
    if url is None:
        body = state.health.evaluate().as_dict()
        source = f"{app.name} (in this process)"
    else:
        target = _health_url(url, state)
        fetched = _fetch(target, state, token, timeout)
        if fetched is None:
            raise SystemExit(UNKNOWN)
        body, source = fetched, f"{app.name} at {target}"
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        for line in render(body, source):
            click.echo(line)
    raise SystemExit(exit_code(body))


def _health_url(url: str, state: AppState) -> str:
    path = urlsplit(url).path
    health = state.settings.endpoints.health_path
    if path in ("", "/") and health is not None:
        return url.rstrip("/") + health
    return url


def _fetch(url: str, state: AppState, token: str | None, timeout: float) -> dict[str, Any] | None:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    auth = state.settings.auth
    token = token or auth.token
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    elif auth.username is not None and auth.password is not None:
        pair = f"{auth.username}:{auth.password}".encode()
        request.add_header("Authorization", f"Basic {b64encode(pair).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()  # 503 is an answer: the app is unhealthy, and says why
        if exc.code != 503:
            _error(f"{url} answered {exc.code} {exc.reason}")
            return None
    except (urllib.error.URLError, OSError) as exc:
        _error(f"could not reach {url}: {exc}")
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        _error(f"{url} did not answer with JSON")
        return None
    if not isinstance(body, dict):
        _error(f"{url} did not answer with a health report")
        return None
    return body


@appmetrics.command("routes")
def routes() -> None:
    """List the extension's endpoints and who may read each."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state(app)
    endpoints, guard = state.settings.endpoints, state.guard
    wanted: tuple[tuple[str | None, Resource | Literal["livez"]], ...] = (
        (endpoints.metrics_path, "metrics"),
        (endpoints.health_path, "health"),
        (endpoints.livez_path, "livez"),
        (endpoints.readyz_path, "readyz"),
        (state.settings.status.path, "details"),
    )
    rules_by_path = {
        rule.rule: rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.partition(".")[0] in state.own_blueprints
    }
    rows = [("PATH", "ENDPOINT", "METHODS", "WHO MAY READ IT")]
    for path, resource in wanted:
        if path is None:
            continue
        rule = rules_by_path.get(path)
        methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})) if rule else "-"
        endpoint = rule.endpoint if rule is not None else "(not registered)"
        rows.append((path, endpoint, methods, guard.describe(resource)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        )
