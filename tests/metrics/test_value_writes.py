"""Multiprocess mode: each request is written to the process's files as it starts and ends,
in prometheus_client's format, under its lock: its own collector reads exact totals, app
code recording into the same series loses nothing, and a forked worker writes its own
files."""

from __future__ import annotations

import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from flask_appmetrics.metrics.multiprocess.files import parse_name
from tests.support.multiprocess import write_in_a_process

ITEMS = {"method": "GET", "endpoint": "/items/<int:n>"}

#: A worker: the app, its requests sent through the WSGI callable from threads.
WORKER = """
import os, threading
from flask import Flask
from prometheus_client import values
from flask_appmetrics import FlaskMetrics
from flask_appmetrics.metrics.value_writes import FileWrites
from tests.support.traffic import environ_for, respond

assert FileWrites(values.ValueClass).batched  # the one-lock path is the one measured
app = Flask("worker")
metrics = FlaskMetrics(app)

@app.get("/items/<int:n>")
def item(n):
    return "ok" if n % 10 else ("failed", 500)

def send(count):
    for i in range(count):
        respond(app, environ_for("GET", f"/items/{i}"))
"""


def _values(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry


def test_threaded_requests_and_app_code_are_written_exactly(tmp_path: Path) -> None:
    code = WORKER + textwrap.dedent(
        """
        # App code counts into the same series meanwhile, through prometheus_client.
        total = metrics.metric("http_requests_total")
        def extra():
            for _ in range(500):
                total.labels("GET", "/items/<int:n>", "200").inc()
        threads = [threading.Thread(target=send, args=(400,)) for _ in range(6)]
        threads += [threading.Thread(target=extra) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """
    )
    write_in_a_process(tmp_path, code)
    registry = _values(tmp_path)
    value = registry.get_sample_value
    assert value("http_requests_total", {**ITEMS, "status": "200"}) == 6 * 360 + 2 * 500
    assert value("http_requests_total", {**ITEMS, "status": "500"}) == 6 * 40
    assert value("http_request_duration_seconds_count", ITEMS) == 6 * 400
    assert value("http_request_duration_seconds_bucket", {**ITEMS, "le": "+Inf"}) == 6 * 400
    duration = value("http_request_duration_seconds_sum", ITEMS)
    assert duration is not None
    assert duration > 0
    assert value("http_requests_in_progress", ITEMS) == 0


def test_a_forked_worker_writes_its_own_files(tmp_path: Path) -> None:
    code = WORKER + textwrap.dedent(
        """
        send(10)  # the route and its values exist before the fork (a preloaded app)
        child = os.fork()
        if child == 0:
            send(20)
            os._exit(0)
        send(5)
        _, status = os.waitpid(child, 0)
        assert status == 0
        print(child, flush=True)
        with open(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "child"), "w") as f:
            f.write(str(child))
        """
    )
    parent = write_in_a_process(tmp_path, code)
    child = int((tmp_path / "child").read_text())
    (tmp_path / "child").unlink()
    pids = {parsed.pid for f in tmp_path.iterdir() if (parsed := parse_name(f.name))}
    assert pids == {parent, child}
    for pid, requests in ((parent, 15), (child, 20)):
        own = tmp_path / str(pid)
        own.mkdir()
        for f in tmp_path.glob(f"*_{pid}.db"):
            f.rename(own / f.name)
        counted = _values(own).get_sample_value("http_request_duration_seconds_count", ITEMS)
        assert counted == requests, pid
