"""Exited workers' metric files folded into one archive, and nothing else touched.

The files are written by prometheus_client itself, through its public metrics, in worker
processes forked for the purpose (``tests.support.multiprocess.write_workers``). Exited
workers' files are then named after pids above the largest ``kernel.pid_max`` (2**22), so no
process can hold them; live ones are this process or real child processes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from flask_appmetrics.metrics.multiprocess import archive as _mp_archive
from flask_appmetrics.metrics.multiprocess import reader as _mp_read
from flask_appmetrics.metrics.multiprocess.archive import fold, load_archive
from flask_appmetrics.metrics.multiprocess.files import (
    ARCHIVE_NAME,
    LOCK_NAME,
    parse_name,
    process_alive,
)
from flask_appmetrics.metrics.multiprocess.reader import read_directory
from flask_appmetrics.metrics.multiprocess.setup import prepare_directory, scrape_registry
from tests.support.multiprocess import Update, write_workers

ROOT = Path(__file__).resolve().parents[2]
#: Above any pid Linux hands out (kernel.pid_max is at most 2**22).
DEAD_PID = 5_000_000

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _counter(name: str, value: float, labels: dict[str, str] | None = None) -> Update:
    return ("counter", name, labels or {}, "inc", value, {})


def _gauge(name: str, value: float, mode: str, labels: dict[str, str] | None = None) -> Update:
    return ("gauge", name, labels or {}, "set", value, {"multiprocess_mode": mode})


def _worker_updates(n: int) -> list[Update]:
    """What one worker does: every type and gauge mode, values that depend on *n*."""
    ep = {"endpoint": f"/e{n % 3}"}
    buckets: dict[str, object] = {"buckets": [0.1, 1.0]}
    return [
        _counter("http_requests", n + 1, {**ep, "status": "200"}),
        _counter("http_requests", n % 2, {**ep, "status": "500"}),
        # n % 4 requests within 0.1 s, 2 within 1 s, 1 slower; durations that are exact in
        # binary, so sums are the same whatever order the files are added in.
        *[("histogram", "latency", ep, "observe", 0.0625, buckets)] * (n % 4),
        *[("histogram", "latency", ep, "observe", 0.5, buckets)] * 2,
        ("histogram", "latency", ep, "observe", 4.0, buckets),
        ("summary", "jobs", {}, "observe", n / 2, {}),
        ("summary", "jobs", {}, "observe", n / 2, {}),
        _gauge("inprog", 1, "livesum", ep),
        _gauge("seen", n, "liveall"),
        _gauge("peak", n % 97, "max"),
        _gauge("low", -(n % 89), "min"),
        _gauge("total", n, "sum"),
        # Written one worker after the other: the larger n, the more recent.
        _gauge("last", n, "mostrecent"),
        _gauge("each", n, "all"),
    ]


def _workers(path: Path, workers: list[tuple[int, int]]) -> None:
    """The files workers ``(pid, n)`` leave, ten each (one per type and gauge mode)."""
    write_workers(path, [_worker_updates(n) for _, n in workers], [pid for pid, _ in workers])


def _worker(path: Path, pid: int, n: int) -> None:
    _workers(path, [(pid, n)])


def _samples(families: object) -> Samples:
    out: Samples = {}
    for family in families:  # type: ignore[attr-defined]
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate {key}"
            out[key] = s.value
    return out


def _prometheus_client_page(path: Path, dead: list[int]) -> Samples:
    """What prometheus_client's collector shows once the dead are marked dead."""
    for pid in dead:
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return _samples(registry.collect())


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())


def test_folding_many_exited_workers_keeps_the_page_prometheus_client_shows(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    dead = [DEAD_PID + i for i in range(120)]
    # The last one is a live worker: this process.
    _workers(mine, [*((pid, i) for i, pid in enumerate(dead)), (os.getpid(), 1000)])
    reference = tmp_path / "reference"
    _copy(mine, reference)
    expected = _prometheus_client_page(reference, dead)

    report = fold(str(mine))
    assert report.pids == tuple(dead)
    assert _samples(read_directory(str(mine))) == expected
    # What is left: the live worker's ten files, the archive and its lock.
    left = sorted(p.name for p in mine.iterdir())
    assert [n for n in left if n.endswith(".db")] == sorted(
        p.name for p in mine.glob(f"*_{os.getpid()}.db")
    )
    assert len(left) == 10 + 2
    assert load_archive(str(mine)).sources == {}
    # Some known values, so the reference cannot be wrong in the same way.
    ok = ("http_requests_total", frozenset({("endpoint", "/e0"), ("status", "200")}))
    assert expected[ok] == sum(i + 1 for i in range(0, 120, 3))
    assert ("inprog", frozenset({("endpoint", "/e1")})) in expected  # the live worker's
    assert expected[("inprog", frozenset({("endpoint", "/e1")}))] == 1
    assert ("inprog", frozenset({("endpoint", "/e0")})) not in expected  # only the dead had it


def test_folding_again_adds_to_the_archive(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    mine = tmp_path / "mine"
    mine.mkdir()
    for batch in range(3):
        pids = [DEAD_PID + batch * 10 + i for i in range(10)]
        _workers(reference, [(pid, pid % 50) for pid in pids])
        for pid in pids:
            for name in reference.glob(f"*_{pid}.db"):
                (mine / name.name).write_bytes(name.read_bytes())
        fold(str(mine))
        dead = list(range(DEAD_PID, DEAD_PID + batch * 10 + 10))
        assert _samples(read_directory(str(mine))) == _prometheus_client_page(reference, dead)
    assert sorted(p.name for p in mine.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]


def test_files_of_other_programs_are_never_touched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The app keeps its SQLite database in the same directory.
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table users (name text)")
        conn.execute("insert into users values ('ada')")
    conn.close()
    (tmp_path / "counter_notes.txt").write_text("mine")
    (tmp_path / "gauge_weird_12.db").write_text("not a mode prometheus_client has")
    _worker(tmp_path, DEAD_PID, 1)  # a stale file of an earlier run
    with caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        removed = prepare_directory(str(tmp_path))
    assert removed == 10
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["app.db", "counter_notes.txt", "gauge_weird_12.db"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select name from users").fetchall() == [("ada",)]
    conn.close()
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "app.db" in warning[0]
    assert "gauge_weird_12.db" in warning[0]

    # Scrapes and folds read and delete only metric files.
    _worker(tmp_path, DEAD_PID + 1, 2)
    registry = scrape_registry(str(tmp_path))
    labels = {"endpoint": "/e2", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 3
    assert {p.name for p in tmp_path.iterdir()} == {
        "app.db",
        "counter_notes.txt",
        ARCHIVE_NAME,
        "gauge_weird_12.db",
        LOCK_NAME,
    }
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from users").fetchone() == (1,)
    conn.close()


def test_a_foreign_db_file_breaks_prometheus_clients_collector_but_not_ours(
    tmp_path: Path,
) -> None:
    _worker(tmp_path, os.getpid(), 4)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("create table t (x int)")
    conn.close()
    # Which error depends on the order glob returns the files in.
    collector = MultiProcessCollector(CollectorRegistry(), path=str(tmp_path))  # type: ignore[no-untyped-call]
    with pytest.raises((ValueError, RuntimeError, struct.error)):
        list(collector.collect())  # type: ignore[no-untyped-call]
    registry = scrape_registry(str(tmp_path))
    assert (
        registry.get_sample_value("http_requests_total", {"endpoint": "/e1", "status": "200"}) == 5
    )


def test_scrape_folds_exited_workers_and_drops_their_live_gauges(tmp_path: Path) -> None:
    # A server without an exit hook (uWSGI): the worker that died mid-request left
    # in-progress at 1; the live worker (this process) has it at 0.
    write_workers(
        tmp_path,
        [
            [_gauge("inprog", 1, "livesum"), _counter("jobs", 7)],
            [_gauge("inprog", 0, "livesum"), _counter("jobs", 2)],
        ],
        [DEAD_PID, os.getpid()],
    )
    for _ in range(2):
        registry = scrape_registry(str(tmp_path))
        assert registry.get_sample_value("inprog") == 0
        assert registry.get_sample_value("jobs_total") == 9
    assert not any(p.name.endswith(f"_{DEAD_PID}.db") for p in tmp_path.iterdir())


def _clone(src: Path, dst: Path) -> None:
    """A byte-identical, equally sparse copy (faster than writing it again)."""
    data = src.read_bytes()
    used = struct.unpack_from("i", data)[0]
    with dst.open("wb") as f:
        f.write(data[:used])
        f.truncate(len(data))


def test_directory_stays_flat_after_a_thousand_exited_workers(tmp_path: Path) -> None:
    templates = tmp_path.parent / f"{tmp_path.name}-templates"
    templates.mkdir()
    write_workers(templates, [[_counter("jobs", 1), _gauge("inprog", 1, "livesum")]], [DEAD_PID])
    for i in range(1000):
        _clone(templates / f"counter_{DEAD_PID}.db", tmp_path / f"counter_{DEAD_PID + i}.db")
        _clone(
            templates / f"gauge_livesum_{DEAD_PID}.db",
            tmp_path / f"gauge_livesum_{DEAD_PID + i}.db",
        )
    registry = scrape_registry(str(tmp_path))
    assert registry.get_sample_value("jobs_total") == 1000
    assert registry.get_sample_value("inprog") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]
    assert (tmp_path / ARCHIVE_NAME).stat().st_size < 1000


# -- crashes mid-fold ----------------------------------------------------------------------


class _Crash(BaseException):
    """A process dying at this point (not an error anything would catch)."""


def _crash(*_: object, **__: object) -> None:
    raise _Crash


_real_remove = os.remove


def _crash_on_folded_file(name: str) -> None:
    parsed = parse_name(os.path.basename(name))
    if parsed is not None and not parsed.dies_with_process:
        raise _Crash
    _real_remove(name)


def _setup_dead(path: Path, count: int) -> tuple[list[int], Samples]:
    reference = path.parent / f"{path.name}-reference"
    pids = [DEAD_PID + i for i in range(count)]
    _workers(path, [(pid, i) for i, pid in enumerate(pids)])
    _copy(path, reference)
    return pids, _prometheus_client_page(reference, pids)


def test_crash_after_the_archive_is_replaced_loses_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mp"
    path.mkdir()
    _, expected = _setup_dead(path, 20)
    with monkeypatch.context() as m:
        m.setattr(_mp_archive.os, "remove", _crash_on_folded_file)
        with pytest.raises(_Crash):
            fold(str(path))
    # The new archive holds the folded files, which are still there.
    assert len(load_archive(str(path)).sources) == 20 * 8  # all but the two live* gauges
    assert (path / f"counter_{DEAD_PID}.db").exists()
    assert _samples(read_directory(str(path))) == expected
    # The next fold finishes the job.
    fold(str(path))
    assert sorted(p.name for p in path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]
    assert load_archive(str(path)).sources == {}
    assert _samples(read_directory(str(path))) == expected


def test_crash_before_the_archive_is_replaced_loses_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mp"
    path.mkdir()
    pids, expected = _setup_dead(path, 5)
    fold(str(path))  # an archive exists already
    # The pid is reused after that fold: new files (identical to the folded ones), counted.
    _worker(path, pids[0], 0)
    mark_process_dead(pids[0], str(path))  # type: ignore[no-untyped-call]
    expected_after = _samples(read_directory(str(path)))
    with monkeypatch.context() as m:
        m.setattr(_mp_archive.os, "replace", _crash)
        with pytest.raises(_Crash):
            fold(str(path))
    assert any(p.name.endswith(".tmp") for p in path.iterdir())
    assert _samples(read_directory(str(path))) == expected_after
    fold(str(path))
    assert sorted(p.name for p in path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]
    assert _samples(read_directory(str(path))) == expected_after
    # The reused pid's file doubled exactly what it held, nothing else.
    ok = ("http_requests_total", frozenset({("endpoint", "/e0"), ("status", "200")}))
    assert expected_after[ok] == expected[ok] + 1


# -- scrapes while folds happen ------------------------------------------------------------

_FOLDER = """
import random, sys, time
from flask_appmetrics.metrics.multiprocess.archive import fold
path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
for pid in range(first, first + count):
    fold(path, [pid], wait_seconds=5, detect=False)
    # Workers exit now and then: some scrapes see no fold, some one, some several.
    time.sleep(random.uniform(0, 0.05))
"""


def _lasting(families: object) -> Samples:
    return {k: v for k, v in _samples(families).items() if k[0] not in ("inprog", "seen")}


def test_scrapes_during_folds_count_every_file_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mp"
    path.mkdir()
    count = 60
    _, expected = _setup_dead(path, count)
    # Gauges of exited processes that leave the page are there until their fold or not.
    lasting = {k: v for k, v in expected.items() if k[0] not in ("inprog", "seen")}
    reads: list[bool] = []  # per read attempt: did a fold happen meanwhile?
    read_once = _mp_read._read_once

    def counting(path: str, *, check: bool = True) -> object:
        result = read_once(path, check=check)
        reads.append(result is None)
        return result

    monkeypatch.setattr(_mp_read, "_read_once", counting)
    with subprocess.Popen(
        [sys.executable, "-c", _FOLDER, str(path), str(DEAD_PID), str(count)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as folder:
        assert folder.stdout is not None
        assert folder.stdin is not None
        assert folder.stdout.readline() == "ready\n"
        folder.stdin.write("go\n")
        folder.stdin.flush()
        mid_fold = 0
        deadline = time.monotonic() + 60
        while folder.poll() is None and time.monotonic() < deadline:
            left = sum(1 for p in path.iterdir() if p.name.startswith("counter_"))
            assert _lasting(read_directory(str(path))) == lasting
            mid_fold += 0 < left < count
        assert folder.wait(timeout=30) == 0
    assert mid_fold >= 10, f"only {mid_fold} scrapes overlapped the folds"
    # Both paths were taken: reads a fold did not disturb, and reads it did (done again).
    assert reads.count(True) >= 3, reads
    assert reads.count(False) >= 10, reads
    assert _samples(read_directory(str(path))) == expected
    assert sorted(p.name for p in path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]


# -- who is alive --------------------------------------------------------------------------

_LIVE_WORKER = """
from prometheus_client import Counter
Counter("jobs", "Jobs").inc(3)
print("ready", flush=True)
import sys
sys.stdin.readline()
"""


def _inodes(path: Path, pid: int) -> set[int]:
    return {p.stat().st_ino for p in path.glob(f"*_{pid}.db")}


def test_a_live_worker_is_alive_and_a_killed_one_is_dead_before_it_is_reaped(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _LIVE_WORKER],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            assert process_alive(child.pid, _inodes(tmp_path, child.pid))
            fold(str(tmp_path))
            assert (tmp_path / f"counter_{child.pid}.db").exists()  # a live worker's, kept
            os.kill(child.pid, signal.SIGKILL)
            # Not reaped yet: a zombie, which writes nothing more.
            deadline = time.monotonic() + 10
            while not _is_zombie(child.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _is_zombie(child.pid)
            assert not process_alive(child.pid, _inodes(tmp_path, child.pid))
            registry = scrape_registry(str(tmp_path))
            assert registry.get_sample_value("jobs_total") == 3
            assert not (tmp_path / f"counter_{child.pid}.db").exists()
        finally:
            child.kill()


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rindex(b")") + 2 :].split()[0] == b"Z"


def test_a_pid_reused_by_another_program_does_not_keep_a_dead_workers_files(
    tmp_path: Path,
) -> None:
    # The worker is gone; its pid now belongs to a program that has nothing to do with
    # metrics (here `sleep`: we name the dead worker's files after its pid).
    other = subprocess.Popen(["sleep", "60"])
    try:
        write_workers(
            tmp_path, [[_counter("jobs", 4), _gauge("inprog", 1, "livesum")]], [other.pid]
        )
        assert not process_alive(other.pid, _inodes(tmp_path, other.pid))
        registry = scrape_registry(str(tmp_path))
        assert registry.get_sample_value("jobs_total") == 4
        assert registry.get_sample_value("inprog") is None
        assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]
    finally:
        other.kill()
        other.wait()


#: prometheus_client's ``MmapedDict`` opening its file: created and sized, not mapped yet.
_OPENING_WORKER = """
import os, sys
f = open(os.path.join(sys.argv[1], "counter_%d.db" % os.getpid()), "a+b")
f.truncate(1 << 20)
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_scrape_never_folds_the_file_a_starting_worker_has_not_mapped_yet(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _OPENING_WORKER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            name = f"counter_{child.pid}.db"
            assert process_alive(child.pid, _inodes(tmp_path, child.pid))
            scrape_registry(str(tmp_path)).collect()
            assert fold(str(tmp_path)).pids == ()
            assert (tmp_path / name).exists()  # the worker's values go to this very file
            assert not (tmp_path / ARCHIVE_NAME).exists()
        finally:
            child.kill()


def test_the_names_prometheus_client_writes() -> None:
    for name in ("counter_1.db", "histogram_22.db", "summary_3.db", "gauge_livesum_4.db"):
        assert parse_name(name) is not None
    for name in (
        "app.db",
        "counter_1.db-journal",
        "counter_x.db",
        "gauge_1.db",
        "gauge_weird_1.db",
        "histogram_1.sqlite",
        "counter_1.db.bak",
    ):
        assert parse_name(name) is None
    assert parse_name("gauge_mostrecent_12.db") == parse_name("gauge_mostrecent_12.db")
    parsed = parse_name("gauge_liveall_12.db")
    assert parsed is not None
    assert (parsed.typ, parsed.mode, parsed.pid, parsed.dies_with_process) == (
        "gauge",
        "liveall",
        12,
        True,
    )


def test_unreadable_archive_is_reported_and_nothing_is_folded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_workers(tmp_path, [[_counter("jobs", 4)]], [DEAD_PID])
    (tmp_path / ARCHIVE_NAME).write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        registry = scrape_registry(str(tmp_path))
        assert registry.get_sample_value("jobs_total") == 4
    assert (tmp_path / f"counter_{DEAD_PID}.db").exists()
    assert any("cannot fold" in r.getMessage() for r in caplog.records)


# -- gunicorn's child_exit -----------------------------------------------------------------


class _Log:
    def info(self, msg: str, *args: object) -> None:
        pass

    def error(self, msg: str, *args: object) -> None:
        pass


class _Server:
    log = _Log()


class _Worker:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def test_child_exit_folds_the_worker_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_appmetrics.gunicorn import child_exit

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _worker(tmp_path, DEAD_PID, 3)
    child_exit(_Server(), _Worker(DEAD_PID))  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_NAME, LOCK_NAME]
    # A broken archive: the worker's files stay (nothing lost), the master goes on.
    _worker(tmp_path, DEAD_PID + 1, 4)
    (tmp_path / ARCHIVE_NAME).write_text("[]")
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        child_exit(_Server(), _Worker(DEAD_PID + 1))  # type: ignore[arg-type]
    assert (tmp_path / f"counter_{DEAD_PID + 1}.db").exists()
    assert any("cannot fold" in r.getMessage() for r in caplog.records)


def test_a_corrupt_file_is_skipped_whole_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "counter_1.db"
    write_workers(
        tmp_path,
        [[_counter("jobs", 2)], [_counter("jobs", 5), _counter("other", 1)]],
        [os.getpid(), 1],
    )
    data = bytearray(bad.read_bytes())
    used = struct.unpack_from("i", data)[0]
    struct.pack_into("i", data, 0, used - 8)  # the last entry now runs past the used size
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="flask_appmetrics"):
        families = read_directory(str(tmp_path))
    # Its first entry (5) is not counted either: nothing of a corrupt file is.
    assert _samples(families) == {("jobs_total", frozenset()): 2.0}
    assert any("counter_1.db" in r.getMessage() for r in caplog.records)


#: A worker of an app with a requests-per-minute limit (argv[1]); it exits on a line of stdin.
_CONFIGURED_WORKER = """
import sys
from flask import Flask
from flask_appmetrics import FlaskMetrics
app = Flask("w")
app.config["APPMETRICS_QUOTA_RPM"] = int(sys.argv[1])
FlaskMetrics(app)
print("ready", flush=True)
sys.stdin.readline()
"""


def _configured_worker(path: Path, rpm: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CONFIGURED_WORKER, str(rpm)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def test_an_exited_workers_configuration_leaves_the_page(tmp_path: Path) -> None:
    # A reload lowers the limit: the old worker exits, the new one has the new limit.
    old = _configured_worker(tmp_path, 30)
    old.communicate("\n")
    new = _configured_worker(tmp_path, 15)
    try:
        for _ in range(2):  # the scrape that folds the old worker, and the next
            registry = scrape_registry(str(tmp_path))
            assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) == 15
            info = [
                s.labels
                for m in registry.collect()
                if m.name == "flask_appmetrics_info"
                for s in m.samples
            ]
            assert len(info) == 1
        assert load_archive(str(tmp_path)).values  # the old worker was folded
    finally:
        new.communicate("\n")
    # The last worker gone, no configuration is shown rather than a stale one.
    registry = scrape_registry(str(tmp_path))
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) is None


def test_configuration_an_earlier_version_archived_is_dropped(tmp_path: Path) -> None:
    # Written with the ``max`` mode, by a worker that has exited, before and after a fold.
    write_workers(
        tmp_path,
        [
            [
                _gauge("quota_limit", 30, "max", {"limit": "rpm"}),
                _gauge("flask_appmetrics_info", 1, "max", {"version": "0.0.1"}),
                _gauge("peak", 7, "max"),
            ]
        ],
        [DEAD_PID],
    )
    registry = scrape_registry(str(tmp_path))
    assert registry.get_sample_value("quota_limit", {"limit": "rpm"}) is None
    assert registry.get_sample_value("flask_appmetrics_info", {"version": "0.0.1"}) is None
    assert registry.get_sample_value("peak") == 7
    archive = load_archive(str(tmp_path))
    ((peak, _),) = archive.values["gauge_max"]
    archive.values["gauge_max"][(_key_like(peak, "quota_limit", {"limit": "tpm"}), "")] = [
        30.0,
        0.0,
    ]
    (tmp_path / ARCHIVE_NAME).write_bytes(archive.encode())
    write_workers(tmp_path, [[_counter("jobs", 1)]], [DEAD_PID + 1])
    registry = scrape_registry(str(tmp_path))
    assert registry.get_sample_value("quota_limit", {"limit": "tpm"}) is None
    assert registry.get_sample_value("peak") == 7
    assert registry.get_sample_value("jobs_total") == 1


def _key_like(key: str, metric: str, labels: dict[str, str]) -> str:
    """The key prometheus_client's files give another gauge series, from one they gave:
    JSON of (metric, sample, labels, help), keys sorted."""
    help_text = json.loads(key)[3]
    return json.dumps([metric, metric, labels, help_text], sort_keys=True)
