"""Fetch third-party Flask apps with test suites and run them with flask-appmetrics added.

The apps are the examples Flask ships in its source distribution (``examples/tutorial``:
flaskr, the tutorial's blog with auth, SQLite and blueprints; ``examples/javascript``),
downloaded once per machine from the package index for the installed Flask version into
``~/.cache/flask-appmetrics-tests`` (``$XDG_CACHE_HOME`` when set), never copied into
this repository.

Run it by hand::

    .venv/bin/python -m tests.support.hosts.third_party.suites
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
#: Per machine, not per checkout: CI runs in a fresh clone.
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "flask-appmetrics-tests"
    / "third-party"
)
PLUGIN_DIR = Path(__file__).resolve().parent
RUN_SECONDS = 300


class Unavailable(Exception):
    """The package index could not be reached for the source distribution."""


@dataclass(frozen=True)
class Suite:
    """A third-party app: its folder in Flask's sdist and how to find its app."""

    name: str
    folder: str
    target: str


SUITES = (
    Suite("flaskr", "examples/tutorial", "flaskr:create_app"),
    Suite("js_example", "examples/javascript", "js_example:app"),
)


#: What pip prints when it cannot reach the index (as opposed to any other failure).
_NETWORK_ERRORS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
    "Connection refused",
    "timed out",
)


def flask_source() -> Path:
    """Flask's unpacked sdist for the installed version, downloaded on first use.

    :raises Unavailable: the package index cannot be reached (any other failure raises
        ``RuntimeError``: a test must not turn a real problem into a skip).
    """
    release = version("flask")
    unpacked = CACHE / f"flask-{release}"
    if (unpacked / "examples").is_dir():
        return unpacked
    CACHE.mkdir(parents=True, exist_ok=True)
    # A folder of our own: test runs on one machine may fetch at the same time.
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".fetch-") as fetching:
        staging = Path(fetching)
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:"]
        # At least one retry: pip names a connection error only when it retries.
        command += ["--no-deps", "--retries", "2", f"flask=={release}", "-d", str(staging)]
        try:
            download = subprocess.run(
                command, capture_output=True, text=True, timeout=RUN_SECONDS, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"pip download flask=={release} timed out") from exc
        # Older sdists are named "Flask-<version>", newer ones "flask-<version>".
        archives = sorted(staging.glob("*.tar.gz"))
        archive = archives[0] if archives else staging / f"flask-{release}.tar.gz"
        if download.returncode != 0 or not archive.exists():
            reason = download.stderr.strip()[-800:]
            if any(marker in reason for marker in _NETWORK_ERRORS):
                raise Unavailable(f"pip could not reach the index for flask=={release}: {reason}")
            raise RuntimeError(f"pip could not download flask=={release}'s sdist: {reason}")
        with tarfile.open(archive) as tar:
            # The data filter refuses absolute paths and links out of the folder.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; an sdist from the package index
                tar.extractall(staging)
        try:
            (staging / archive.name.removesuffix(".tar.gz")).rename(unpacked)
        except OSError:
            # Another run finished first; its copy is the same.
            if not (unpacked / "examples").is_dir():
                raise
    return unpacked


@dataclass(frozen=True)
class Outcome:
    suite: Suite
    returncode: int
    output: str
    apps: list[dict[str, Any]]


def run(suite: Suite, source: Path, work: Path) -> Outcome:
    """Run *suite*'s own tests with flask-appmetrics added, warnings as errors."""
    app_dir = source / suite.folder
    report = work / f"{suite.name}-report.json"
    env = {
        **os.environ,
        # The app's folder (not installed), ours for the plugin, and this project.
        "PYTHONPATH": os.pathsep.join([str(app_dir), str(PLUGIN_DIR), str(ROOT)]),
        "APPMETRICS_SUITE_TARGET": suite.target,
        "APPMETRICS_SUITE_REPORT": str(report),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-W",
            "error",
            "-p",
            "appmetrics_suite_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(app_dir),
            str(app_dir / "tests"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )
    apps = json.loads(report.read_text()) if report.exists() else []
    return Outcome(suite, result.returncode, result.stdout + result.stderr, apps)


def main() -> int:
    try:
        source = flask_source()
    except Unavailable as exc:
        print(exc)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        for suite in SUITES:
            outcome = run(suite, source, Path(work))
            served = sum(a["requests_served"] for a in outcome.apps)
            recorded = sum(a["http_requests_total"] for a in outcome.apps)
            summary = outcome.output.strip().splitlines()[-1] if outcome.output.strip() else ""
            print(
                f"{suite.name}: exit {outcome.returncode} ({summary}); {len(outcome.apps)} apps, "
                f"{served} requests served, {recorded:g} recorded"
            )
            failed += outcome.returncode != 0 or served != recorded
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
