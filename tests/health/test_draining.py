"""The drain flag, the SIGTERM handler that drains, and what the endpoints say meanwhile.

Real servers draining on a real SIGTERM are in ``tests/system/test_draining.py``.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from types import FrameType

import pytest
from flask import Flask

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.health.draining import (
    PROCESS_DRAIN,
    SIGTERM_DRAIN,
    SIGTERM_REASON,
    DrainFlag,
    SigtermDrain,
)
from tests.support.apps import AppFactory

WAIT = 30.0


def test_flag_starts_describes_and_clears() -> None:
    flag = DrainFlag()
    assert flag.current() is None
    drain = flag.start("draining: deploy", 10.0)
    assert drain.reason == "draining: deploy"
    left = drain.seconds_left(drain.started)
    assert left == pytest.approx(10.0)
    assert drain.describe(drain.started) == "draining: deploy; stops serving in 10.0 s"
    assert drain.as_dict(drain.started)["seconds_left"] == pytest.approx(10.0)
    # Started once: a later call changes the reason and the deadline, not the start.
    later = flag.start("draining: preStop")
    assert (later.started, later.deadline, later.reason) == (drain.started, None, later.reason)
    assert later.describe() == "draining: preStop"
    flag.clear()
    assert flag.current() is None


def test_flag_keeps_a_long_reason_whole_characters_only() -> None:
    flag = DrainFlag()
    drain = flag.start("é" * 1000)
    assert drain.reason == "é" * 128  # 256 bytes of two-byte characters


def test_flag_is_shared_with_a_process_forked_after_it() -> None:
    flag = DrainFlag()
    read, write = os.pipe()
    go_read, go_write = os.pipe()
    with warnings.catch_warnings():
        # Python warns about forking a process with threads; the child only reads memory.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.read(go_read, 1)  # wait for the parent to start the drain
        current = flag.current()
        os.write(write, (current.reason if current else "none").encode())
        os._exit(0)
    flag.start("draining: from the parent")
    os.write(go_write, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(read, 100) == b"draining: from the parent"
    for fd in (read, write, go_read, go_write):
        os.close(fd)


def test_sigterm_starts_the_drain_and_hands_the_signal_on_after_it() -> None:
    flag = DrainFlag()
    drain = SigtermDrain(flag)
    handed: list[int] = []
    done = threading.Event()

    def previous(signum: int, frame: FrameType | None) -> None:
        handed.append(signum)
        done.set()

    before = signal.signal(signal.SIGTERM, previous)
    try:
        logged: list[str] = []
        assert drain.install(0.2, log=logged.append)
        assert drain.installed
        assert flag.armed() == 0.2
        os.kill(os.getpid(), signal.SIGTERM)
        current = flag.current()
        assert current is not None
        assert current.reason == SIGTERM_REASON
        assert handed == []  # not yet: draining
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
        assert done.wait(WAIT)
        assert handed == [signal.SIGTERM]  # once, after the drain
        assert logged[0].startswith("flask-appmetrics: SIGTERM received: draining for 0.2 s")
        assert logged[-1] == "flask-appmetrics: drain over, shutting down"
        drain.uninstall()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, before)


def test_install_is_refused_outside_the_main_thread() -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(SigtermDrain(DrainFlag()).install(1)))
    thread.start()
    thread.join(WAIT)
    assert results == [False]


def test_init_app_drains_on_sigterm_when_configured(app_factory: AppFactory) -> None:
    before = signal.getsignal(signal.SIGTERM)
    app_factory({"APPMETRICS_DRAIN_SECONDS": 2})
    assert SIGTERM_DRAIN.installed
    assert PROCESS_DRAIN.armed() == 2.0
    SIGTERM_DRAIN.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before


def test_drain_seconds_default_to_the_environment(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPMETRICS_DRAIN_SECONDS", "7.5")
    app = app_factory()
    assert app.config["APPMETRICS_DRAIN_SECONDS"] == 7.5
    assert PROCESS_DRAIN.armed() == 7.5
    # The app's own value wins.
    assert app_factory({"APPMETRICS_DRAIN_SECONDS": 0})  # no error, nothing installed anew
    monkeypatch.setenv("APPMETRICS_DRAIN_SECONDS", "later")
    with pytest.raises(ConfigurationError, match="APPMETRICS_DRAIN_SECONDS"):
        app_factory()


def test_a_process_whose_server_owns_sigterm_is_told(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Outside the main thread nothing can take SIGTERM: say so rather than drain nothing.
    errors: list[BaseException] = []

    def make() -> None:
        try:
            app_factory({"APPMETRICS_DRAIN_SECONDS": 3})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join(WAIT)
    assert errors == []
    assert not SIGTERM_DRAIN.installed
    assert "nothing drains on SIGTERM" in caplog.text


def test_while_draining_readyz_fails_with_the_reason_and_the_app_serves(
    metrics: FlaskMetrics, app: Flask
) -> None:
    ran: list[int] = []
    metrics.add_health_check("database", lambda: ran.append(1) or True, cache_seconds=0)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    drain = metrics.start_draining("draining: preStop hook", seconds=20)
    assert drain.reason == "draining: preStop hook"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "fail"
    assert body["reason"].startswith("draining: preStop hook; stops serving in ")
    assert len(ran) == 1  # no check runs for a server on its way out
    ietf = client.get("/readyz", headers={"Accept": "application/health+json"})
    assert ietf.status_code == 503
    assert ietf.get_json()["output"].startswith("draining: preStop hook")
    # Everything else goes on: the app, liveness, and health (with the drain in it).
    assert client.get("/items/1").status_code == 200
    assert client.get("/livez").status_code == 200
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.get_json()["draining"]["reason"] == "draining: preStop hook"
    assert 0 < health.get_json()["draining"]["seconds_left"] <= 20
    PROCESS_DRAIN.clear()
    assert client.get("/readyz").status_code == 200
    assert "draining" not in client.get("/api/health").get_json()
