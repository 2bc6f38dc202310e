"""Metric files written the public way: by prometheus_client itself, in a process of their own
with ``PROMETHEUS_MULTIPROC_DIR`` set before it is imported, as a worker writes them."""

from __future__ import annotations

import json
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


#: One metric update: (type, name, labels, method, argument, constructor options), e.g.
#: ``("gauge", "inprog", {"endpoint": "/"}, "set", 1, {"multiprocess_mode": "livesum"})``.
Update = tuple[str, str, dict[str, str], str, float, dict[str, object]]

_FORKING_WRITER = r"""
import json, os, sys
from prometheus_client import Counter, Gauge, Histogram, Summary

TYPES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram, "summary": Summary}
for updates in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:  # a worker of its own, as a pre-fork server makes them
        code = 1
        try:
            metrics = {}
            for typ, name, labels, method, arg, options in updates:
                if (typ, name) not in metrics:
                    metrics[typ, name] = TYPES[typ](
                        name, name + " help", sorted(labels), registry=None, **options
                    )
                metric = metrics[typ, name]
                getattr(metric.labels(**labels) if labels else metric, method)(arg)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("a worker failed")
    print(pid, flush=True)
"""


def write_workers(directory: Path, workers: list[list[Update]], pids: list[int]) -> None:
    """The metric files of exited workers, written by prometheus_client itself: each list
    of *workers* is applied in a process forked for it (as a pre-fork server's worker),
    whose files are then renamed to the pid at the same place in *pids*, so tests can have
    files of pids no process holds (above ``pid_max``) or of this very process."""
    assert len(workers) == len(pids)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_WRITER],
        input=json.dumps(workers),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = [int(line) for line in done.stdout.split()]
    assert len(written) == len(pids)
    for real, wanted in zip(written, pids, strict=True):
        for path in directory.glob(f"*_{real}.db"):
            prefix = path.name[: -len(f"{real}.db")]
            target = directory / f"{prefix}{wanted}.db"
            assert not target.exists(), target
            path.rename(target)
