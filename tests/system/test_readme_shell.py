"""The shell blocks of the README and of the documentation pages, run for real.

The README's opening block's two commands each get a test of their own (the test command is
run on one test file: running the whole suite from inside itself would never end); both
build the checkout's ``.venv``, so they run only from it (as ``scripts/test.sh`` runs the
suite), never from an environment of the user's own. Every other ``bash`` block (the
README's, and each ``.. code-block:: bash`` under ``docs/``) runs as written with
``bash -e -o pipefail``, on a free port instead of 5000, with the Python running the tests in
place of ``.venv/bin/``, in a session of its own that is killed afterwards, so a server it
started cannot outlive it; a block whose tool is missing skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import docs
from tests.support.readme import blocks

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: ``(where, source)`` of every shell block to run: ``README.md:<line>``, ``<page>:<line>``.
SHELL_BLOCKS = [(f"README.md:{line}", source) for line, source in blocks("bash")[1:]] + [
    (block.id, block.source) for block in docs.blocks("bash")
]
BIN = Path(sys.executable).parent

#: The README's commands make and fill the checkout's .venv: run them only from there.
from_checkout_venv = pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="runs from the checkout's .venv only (scripts/test.sh): it would build one",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "SENTRY_DSN")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@contextmanager
def session(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command exited before serving"
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"nothing answered at {url} within {seconds} s")


def requests_by_endpoint(page: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == "http_requests_total":
                counts[s.labels["endpoint"]] = counts.get(s.labels["endpoint"], 0) + s.value
    return counts


@from_checkout_venv
def test_the_demo_command_serves_with_traffic_and_says_where_to_look(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with session(["./scripts/demo.sh", "--port", str(port)], log) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/livez", proc)
        # The traffic it sends itself reaches the API without anyone's help.
        deadline = time.monotonic() + 60
        while True:
            status, page = get(f"{base}/metrics")
            assert status == 200
            counts = requests_by_endpoint(page)
            if counts.get("/api/generate", 0) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert counts.get("/api/generate", 0) >= 5, counts
        status, health = get(f"{base}/api/health")
        assert status == 200
        assert '"status": "healthy"' in health or '"status":"healthy"' in health
        status, _ = get(f"{base}/status")
        assert status == 200
    text = log.read_text()
    for path in ("/status", "/metrics", "/api/health"):
        assert f"http://127.0.0.1:{port}{path}" in text, text
    assert "Prometheus metrics initialized successfully" in text, text


@from_checkout_venv
def test_the_test_command_sets_up_and_runs_pytest(tmp_path: Path) -> None:
    result = subprocess.run(
        ["./scripts/test.sh", "tests/test_smoke_layout.py", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== mypy" in result.stdout
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout[-2000:]
    assert " failed" not in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize(
    ("where", "source"), SHELL_BLOCKS, ids=[where for where, _ in SHELL_BLOCKS]
)
def test_shell_examples_run(where: str, source: str, tmp_path: Path) -> None:
    for tool in ("curl", "promtool", "uwsgi"):
        found = shutil.which(tool) if tool != "uwsgi" else shutil.which(tool, path=str(BIN))
        if re.search(rf"\b{tool}\b", source) and found is None:
            pytest.skip(f"{where} uses {tool}, which is not installed")
    port = str(free_port())
    script = (
        source.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        .replace("--port 5000", f"--port {port}")
        .replace(".venv/bin/", f"{BIN}/")
    )
    log = tmp_path / "block.log"
    with session(["bash", "-e", "-o", "pipefail", "-c", script], log) as proc:
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where}: still running after 180 s\n{log.read_text()}")
    assert code == 0, f"{where} exited {code}:\n{log.read_text()}"
