"""Real gunicorn, three sync workers, prometheus_client's multiprocess mode.

Every scrape must show the sum over all workers, dead ones included, with no stuck
``http_requests_in_progress`` from a worker killed mid-request, and a broken setup must
stop gunicorn at start with a message instead of serving a wrong page.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.metrics.multiprocess.files import parse_name
from flask_appmetrics.metrics.multiprocess.setup import (
    check_directory,
    check_setup,
    scrape_registry,
)
from tests.support.gunicorn_cmd import GUNICORN, NO_CONTROL_SOCKET
from tests.support.gunicorn_server import (
    ROOT,
    WAIT_SECONDS,
    Blocked,
    Gunicorn,
    sample_value,
    wait_for,
)
from tests.support.multiprocess import write_in_a_process
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    # A counter file left by an earlier run: on_starting must remove it, or every total
    # below would be off by 1000.
    write_in_a_process(
        multiproc,
        "from prometheus_client import Counter\n"
        "requests = Counter('http_requests', '', ['method', 'endpoint', 'status'])\n"
        "requests.labels('GET', '/items/<int:item_id>', '200').inc(1000)\n",
    )
    server = Gunicorn(tmp_path, multiproc=multiproc)
    try:
        yield server
    finally:
        server.stop()


BLOCK = "/block/<name>"
ITEMS = "/items/<int:item_id>"


def test_every_scrape_sums_all_workers_including_dead_ones(gunicorn: Gunicorn) -> None:
    assert not (gunicorn.multiproc / "counter_999999.db").exists()
    a, b = Blocked(gunicorn, "a"), Blocked(gunicorn, "b")
    assert a.pid != b.pid
    # The third worker answers: it sees the other two workers' live in-progress gauges.
    samples = gunicorn.scrape()
    assert sample_value(samples, "http_requests_in_progress", method="GET", endpoint=BLOCK) == 2

    # Killed mid-request: child_exit must drop its live gauge.
    os.kill(a.pid, signal.SIGKILL)
    gunicorn.wait_workers(3, without=a.pid)
    samples = gunicorn.scrape()
    assert sample_value(samples, "http_requests_in_progress", method="GET", endpoint=BLOCK) == 1

    c = Blocked(gunicorn, "c")  # b still holds its worker, so c runs in another one
    assert c.pid != b.pid
    assert b.release() == 200
    assert c.release() == 200
    assert a.release() is None
    assert a.failed

    # b's worker dies idle: its counters stay in the sum.
    os.kill(b.pid, signal.SIGKILL)
    gunicorn.wait_workers(3, without=b.pid)

    for i in range(30):
        assert gunicorn.get(f"/items/{i}").status_code == 200
    for _ in range(3):
        assert gunicorn.get("/cache/hit").status_code == 200
    assert gunicorn.get("/cache/miss").status_code == 200

    earlier_scrapes = 2
    for k in range(6):
        samples = gunicorn.scrape()
        get = {"method": "GET"}
        assert (
            sample_value(samples, "http_requests_total", **get, endpoint=ITEMS, status="200") == 30
        )
        assert (
            sample_value(samples, "http_requests_total", **get, endpoint=BLOCK, status="200") == 2
        )
        assert (
            sample_value(samples, "http_requests_total", **get, endpoint="/metrics", status="200")
            == earlier_scrapes + k
        )
        assert (
            sample_value(samples, "http_request_duration_seconds_count", **get, endpoint=ITEMS)
            == 30
        )
        assert (
            sample_value(
                samples, "http_request_duration_seconds_bucket", **get, endpoint=ITEMS, le="+Inf"
            )
            == 30
        )
        assert sample_value(samples, "http_requests_in_progress", **get, endpoint=BLOCK) == 0
        assert sample_value(samples, "http_requests_in_progress", **get, endpoint=ITEMS) == 0
        # The scrape itself is the one request in progress.
        assert sample_value(samples, "http_requests_in_progress", **get, endpoint="/metrics") == 1
        # Derived at scrape time from the all-workers counters, not one worker's view.
        assert sample_value(samples, "cache_operations_total", operation="get", result="hit") == 3
        assert sample_value(samples, "cache_hit_rate") == 0.75
        assert sample_value(samples, "flask_appmetrics_info", version=_version()) == 1
        # Per-worker windows without Redis: left out rather than one worker's numbers.
        assert sample_value(samples, "quota_requests_today") is None
        assert sample_value(samples, "concurrent_users") is None


def _version() -> str:
    from flask_appmetrics import __version__

    return __version__


def test_multiproc_dir_is_created_at_start(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path, workers=2, multiproc=tmp_path / "new" / "metrics")
    try:
        assert server.get("/items/1").status_code == 200
        samples = server.scrape()
        assert (
            sample_value(samples, "http_requests_total", method="GET", endpoint=ITEMS, status="200")
            == 1
        )
    finally:
        server.stop()


def test_redis_windows_and_gauge_modes_across_workers(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_server = RedisServer(redis_dir)
    redis_server.start()
    server = Gunicorn(tmp_path, env={"TEST_REDIS_URL": redis_server.url})
    try:
        for i in range(12):
            headers = {"Authorization": f"Bearer user-{i % 4}"}
            assert server.get(f"/quota/{i}", headers=headers).status_code == 200
        # Worker x opens its breaker, worker y's stays closed: livemax shows the worst.
        x = Blocked(server, "x", "?breaker=2")
        y = Blocked(server, "y", "?breaker=0")
        samples = server.scrape()
        assert sample_value(samples, "circuit_breaker_state", service="gemini") == 2
        os.kill(x.pid, signal.SIGKILL)
        server.wait_workers(3, without=x.pid)
        samples = server.scrape()
        assert sample_value(samples, "circuit_breaker_state", service="gemini") == 0
        assert y.release() == 200
        for _ in range(4):
            samples = server.scrape()
            # Quota and users live in Redis: exact whichever worker answers the scrape.
            assert sample_value(samples, "quota_requests_today") == 12
            assert sample_value(samples, "quota_tokens_today") == sum(range(12))
            # user-0..3, plus the unauthenticated client of the other requests.
            assert sample_value(samples, "concurrent_users") == 5
    finally:
        server.stop()
        redis_server.kill()


def test_preloaded_app(tmp_path: Path) -> None:
    # --preload: the master imports the app (and opens metric files) before on_starting
    # empties the directory, and the workers inherit its metrics through fork.
    server = Gunicorn(tmp_path, workers=2, args=("--preload",))
    try:
        for i in range(5):
            assert server.get(f"/items/{i}").status_code == 200
        for k in range(3):
            samples = server.scrape()
            labels = {"method": "GET", "endpoint": ITEMS, "status": "200"}
            assert sample_value(samples, "http_requests_total", **labels) == 5
            scrapes = {**labels, "endpoint": "/metrics"}
            assert (sample_value(samples, "http_requests_total", **scrapes) or 0) == k
            assert sample_value(samples, "flask_appmetrics_info", version=_version()) == 1
    finally:
        server.stop()


def test_hooks_imported_by_a_users_own_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from flask_appmetrics.gunicorn import child_exit, on_starting, when_ready\ntimeout = 30\n"
    )
    server = Gunicorn(tmp_path, workers=2, config=str(conf))
    try:
        blocked = Blocked(server, "k")
        os.kill(blocked.pid, signal.SIGKILL)
        server.wait_workers(2, without=blocked.pid)
        assert server.get("/items/1").status_code == 200
        samples = server.scrape()
        # The killed worker was the only one with that series: gone, not stuck at 1.
        assert (
            sample_value(samples, "http_requests_in_progress", method="GET", endpoint=BLOCK) is None
        )
        labels = {"method": "GET", "endpoint": ITEMS, "status": "200"}
        assert sample_value(samples, "http_requests_total", **labels) == 1
    finally:
        server.stop()


def _run_gunicorn(
    tmp_path: Path,
    env: dict[str, str],
    *args: str,
    app: str = "tests.support.hosts.gunicorn_app:app",
) -> subprocess.CompletedProcess[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        return subprocess.run(
            [GUNICORN, *args, *NO_CONTROL_SOCKET, "-b", f"fd://{sock.fileno()}", app],
            cwd=ROOT,
            env={**os.environ, "TEST_SIGNAL_DIR": str(tmp_path), **env},
            pass_fds=(sock.fileno(),),
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
    finally:
        sock.close()


CONFIG = ("-c", "python:flask_appmetrics.gunicorn")


def _without_multiproc_env() -> dict[str, str]:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    return {}


def test_several_workers_without_multiproc_dir_refuse_to_start(tmp_path: Path) -> None:
    result = _run_gunicorn(tmp_path, _without_multiproc_env(), *CONFIG, "-w", "3")
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR: is not set but gunicorn runs 3 workers" in result.stderr


def test_multiproc_dir_set_by_gunicorn_env_is_too_late(tmp_path: Path) -> None:
    # gunicorn applies --env after loading the config module, i.e. after prometheus_client
    # was imported: the values would stay in memory.
    path = tmp_path / "mp"
    result = _run_gunicorn(
        tmp_path, {}, *CONFIG, "-w", "2", "--env", f"PROMETHEUS_MULTIPROC_DIR={path}"
    )
    assert result.returncode != 0
    assert "prometheus_client was imported before it was" in result.stderr


def test_unusable_multiproc_dir_refuses_to_start(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(not_a_dir / "metrics")}
    result = _run_gunicorn(tmp_path, env, *CONFIG, "-w", "2")
    assert result.returncode != 0
    assert "cannot prepare" in result.stderr


def test_app_setting_multiproc_dir_late_fails_worker_boot(tmp_path: Path) -> None:
    # Without our gunicorn hooks, init_app in the worker is the guard.
    env = {"TEST_LATE_MULTIPROC_DIR": str(tmp_path)}
    result = _run_gunicorn(
        tmp_path, env, "-w", "1", app="tests.support.hosts.gunicorn_app_late_env:app"
    )
    assert result.returncode != 0
    assert "prometheus_client was imported before it was" in result.stderr


def test_missing_multiproc_dir_without_our_hooks_fails_worker_boot(tmp_path: Path) -> None:
    # Nobody created the directory (no flask_appmetrics.gunicorn config): init_app says so
    # instead of every metric update failing inside requests.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")}
    result = _run_gunicorn(tmp_path, env, "-w", "1")
    assert result.returncode != 0
    assert "is not a directory" in result.stderr


# -- the same checks in-process -----------------------------------------------------------


def test_init_app_refuses_env_var_set_after_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    ext = FlaskMetrics(registry=CollectorRegistry())
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR"):
        ext.init_app(Flask("late"))


def test_check_setup_is_off_without_env_var() -> None:
    assert check_setup() is None


def test_check_directory_rejects_missing_and_unwritable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        check_directory(str(tmp_path / "missing"))
    # Read-only even for root: os.access would say yes, creating a file does not.
    with pytest.raises(ConfigurationError, match="cannot write"):
        check_directory("/proc/1")


def test_scrape_skips_a_file_a_starting_worker_has_not_sized_yet(tmp_path: Path) -> None:
    # A worker creates its file empty, then sizes it: a scrape in between must not fail.
    write_in_a_process(
        tmp_path,
        "from prometheus_client import Counter\n"
        "Counter('jobs', 'Jobs', ['kind']).labels('a').inc(3)\n",
    )
    (tmp_path / "counter_2.db").touch()
    page = generate_latest(scrape_registry(str(tmp_path))).decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
    assert samples[("jobs_total", frozenset({("kind", "a")}))] == 3.0
    # name[] filtering (prometheus_client's restricted registry) works on it too.
    only = generate_latest(scrape_registry(str(tmp_path)).restricted_registry(["jobs_total"]))
    names = {s.name for f in text_string_to_metric_families(only.decode()) for s in f.samples}
    assert names == {"jobs_total"}


def _metric_pids(path: Path) -> set[int]:
    pids = set()
    for p in path.iterdir():
        parsed = parse_name(p.name)
        if parsed is not None:
            pids.add(parsed.pid)
    return pids


def test_recycled_workers_are_folded_and_nothing_else_is_touched(tmp_path: Path) -> None:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    # The app keeps its SQLite database there too (a mistake, but not one to punish).
    with sqlite3.connect(multiproc / "app.db") as conn:
        conn.execute("create table users (name text)")
        conn.execute("insert into users values ('ada')")
    conn.close()
    server = Gunicorn(
        tmp_path,
        workers=2,
        multiproc=multiproc,
        args=("--max-requests", "3", "--max-requests-jitter", "0"),
    )
    try:
        served_by = set()
        seen = 0.0
        labels = {"method": "GET", "endpoint": ITEMS, "status": "200"}
        for i in range(150):
            response = server.get(f"/items/{i}")
            assert response.status_code == 200
            served_by.add(response.json()["pid"])
            if i % 5 == 0:
                # Scrapes while workers exit and are folded: a count seen twice or missed
                # for a moment would show as a total going down, or above what was sent.
                total = sample_value(server.scrape(), "http_requests_total", **labels) or 0.0
                assert seen <= total <= i + 1
                seen = total
        assert len(served_by) >= 40  # recycled every three requests
        # Every exited worker's files were folded by child_exit: what is left belongs to
        # the two live workers (and the master, which holds no metric file).
        wait_for(
            "exited workers' files to be folded",
            lambda: _metric_pids(multiproc) <= server.workers() | {server.proc.pid},
        )
        files = [p.name for p in multiproc.iterdir()]
        assert len(files) <= 2 * 5 + 3, sorted(files)
        for k in range(4):
            samples = server.scrape()
            get = {"method": "GET", "endpoint": ITEMS}
            assert sample_value(samples, "http_requests_total", **get, status="200") == 150
            assert sample_value(samples, "http_request_duration_seconds_count", **get) == 150
            # Only live workers' in-progress series exist; none is serving /items.
            assert (sample_value(samples, "http_requests_in_progress", **get) or 0) == 0
            scrapes = {"method": "GET", "endpoint": "/metrics", "status": "200"}
            assert (sample_value(samples, "http_requests_total", **scrapes) or 0) == 30 + k
    finally:
        server.stop()
    with sqlite3.connect(multiproc / "app.db") as conn:
        assert conn.execute("select name from users").fetchall() == [("ada",)]
    conn.close()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "holds files that are not prometheus_client's (app.db)" in log
