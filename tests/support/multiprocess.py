"""Metric files written the public way: by prometheus_client itself, in a process of their own
with ``PROMETHEUS_MULTIPROC_DIR`` set before it is imported, as a worker writes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def write_in_a_process(directory: Path, code: str) -> int:
    """Run *code* (which creates and updates prometheus_client metrics) in a fresh Python
    whose metric files go to *directory*; return that process's pid, exited by then."""
    return _run(directory, code)[0]


def output_in_a_process(directory: Path, code: str) -> str:
    """Run *code* as :func:`write_in_a_process` does; return what it printed."""
    return _run(directory, code)[1]


def _run(directory: Path, code: str) -> tuple[int, str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output.decode()
    return proc.pid, output.decode()
