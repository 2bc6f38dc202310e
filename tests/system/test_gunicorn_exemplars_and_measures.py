"""Exemplars and the opt-in measurements under gunicorn's workers (multiprocess mode).

prometheus_client's multiprocess mode keeps no exemplar; each worker keeps the latest of
each bucket in a file of its own, and the scrape merges them: the page shows the trace of
the latest request of each bucket, whichever worker served it. Prometheus, started with
exemplar storage, scrapes the page and answers ``query_exemplars`` with the trace id. The
opt-in sizes and queue time of every worker add up on the page too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support.gunicorn_server import Gunicorn, stop_process

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
prometheus = shutil.which("prometheus")
PROMETHEUS_WAIT_SECONDS = 90.0
pytestmark = pytest.mark.slow


def traceparent(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def exemplars(server: Gunicorn, endpoint: str) -> dict[str, tuple[str, float]]:
    """``le`` -> (trace id, value) of the buckets of *endpoint* that carry an exemplar."""
    page = server.get("/metrics", headers=OPENMETRICS)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("application/openmetrics-text")
    out: dict[str, tuple[str, float]] = {}
    for family in text_string_to_metric_families(page.text):
        if family.name != "http_request_duration_seconds":
            continue
        previous = float("-inf")
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels["endpoint"] == endpoint:
                bound = float(s.labels["le"])
                if s.exemplar is not None:
                    assert previous < s.exemplar.value <= bound
                    out[s.labels["le"]] = (s.exemplar.labels["trace_id"], s.exemplar.value)
                previous = bound
    return out


def exemplar_files(server: Gunicorn) -> set[int]:
    prefix = "flask_appmetrics.exemplars."
    return {int(p.name[len(prefix) :]) for p in server.multiproc.glob(prefix + "*")}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path, workers=2)
    try:
        yield server
    finally:
        server.stop()


def test_every_workers_latest_exemplar_is_merged_on_the_page(server: Gunicorn) -> None:
    fast = secrets.token_hex(16)
    fast_pid = server.get("/items/1", headers=traceparent(fast)).json()["pid"]
    # Slow requests until the other worker serves one: its bucket is another.
    for _ in range(100):
        slow = secrets.token_hex(16)
        slow_pid = server.get("/slow/120", headers=traceparent(slow)).json()["pid"]
        if slow_pid != fast_pid:
            break
    else:
        pytest.fail("one worker served every request")

    items = exemplars(server, "/items/<int:item_id>")
    assert [trace for trace, _ in items.values()] == [fast]
    slow_buckets = exemplars(server, "/slow/<int:ms>")
    assert slow in [trace for trace, _ in slow_buckets.values()]
    assert all(value >= 0.12 for _, value in slow_buckets.values())
    assert exemplar_files(server) == {fast_pid, slow_pid}

    # A worker killed: its files are folded, its exemplar file goes with the next scrape,
    # the other worker's exemplar stays.
    os.kill(fast_pid, signal.SIGKILL)
    server.wait_workers(2, without=fast_pid)
    assert exemplars(server, "/items/<int:item_id>") == {}
    assert slow in [trace for trace, _ in exemplars(server, "/slow/<int:ms>").values()]
    assert fast_pid not in exemplar_files(server)


@pytest.mark.skipif(prometheus is None, reason="prometheus not installed")
def test_prometheus_stores_the_exemplar_and_answers_query_exemplars(
    server: Gunicorn, tmp_path: Path
) -> None:
    assert prometheus is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: app\n    static_configs:\n"
        f'      - targets: ["{server.base.removeprefix("http://")}"]\n'
    )
    log_path = tmp_path / "prometheus.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.time()
        trace_id = secrets.token_hex(16)
        assert server.get("/items/7", headers=traceparent(trace_id)).status_code == 200

        def stored() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                answer = requests.get(
                    f"{base}/api/v1/query_exemplars",
                    params={
                        "query": "http_request_duration_seconds_bucket"
                        '{endpoint="/items/<int:item_id>"}',
                        "start": str(started - 60),
                        "end": str(time.time() + 60),
                    },
                    timeout=5,
                ).json()
            except (requests.ConnectionError, requests.Timeout):
                return False  # still starting, or slow to answer on a busy machine
            assert answer["status"] == "success", answer
            return any(
                exemplar["labels"].get("trace_id") == trace_id
                for series in answer["data"]
                for exemplar in series["exemplars"]
            )

        # Longer than a server's start: Prometheus starts, scrapes each second, then stores.
        deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
        while not stored():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        stop_process(proc)


def test_sizes_and_queue_time_of_every_worker(tmp_path: Path) -> None:
    """The opt-in families under gunicorn: a file sent with sendfile() counts its length,
    and the queue time of each worker's requests lands in the shared page."""
    server = Gunicorn(tmp_path, workers=2, env={"TEST_MEASURES": "1"})
    try:
        for _ in range(6):
            assert len(server.get("/file/5000").content) == 5000
            start = {"X-Request-Start": f"t={time.time() - 0.2:.3f}"}
            assert server.get("/items/1", headers=start).status_code == 200
        samples = server.scrape()
    finally:
        server.stop()
    file_labels = frozenset({("method", "GET"), ("endpoint", "/file/<int:size>")})
    assert samples[("http_response_size_bytes_count", file_labels)] == 6
    assert samples[("http_response_size_bytes_sum", file_labels)] == 6 * 5000
    assert samples[("http_request_queue_seconds_count", frozenset())] == 6
    assert samples[("http_request_queue_seconds_sum", frozenset())] >= 6 * 0.2
