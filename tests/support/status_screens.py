"""The status page in real headless Chromium: serving an app over HTTP, running Chromium,
and the example backend with some minutes of traffic behind it (on a clock the caller
moves), as the browser tests and the docs' screenshot show it.

``python -m tests.support.status_screens docs/_static/status-page.png`` writes the docs'
screenshot of the example app's page.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from example_app import create_app
from flask_appmetrics import FlaskMetrics
from tests.support.clock import FakeClock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: The flags every run uses: no sandbox (containers), nothing fetched in the background.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def run_chromium(profile: Path, url: str, *args: str, size: tuple[int, int] = (1000, 800)) -> str:
    """Run Chromium on *url* with a fresh profile under *profile*; return its stdout."""
    assert CHROMIUM is not None, "chromium is not installed"
    command = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """*app* over real HTTP on a free local port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def example_app(clock: FakeClock) -> Flask:
    """The example backend on a registry of its own, its status page reading on *clock*."""
    app = create_app(
        {"TESTING": True, "EXAMPLE_LLM": "offline", "APPMETRICS_STATUS_REFRESH_SECONDS": 10},
        extension=FlaskMetrics(registry=CollectorRegistry()),
    )
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.status_page is not None
    state.status_page.history.clock = clock
    return app


#: The size of the docs' screenshot: a laptop's width, every section of the page.
DOCS_SIZE = (1200, 1180)

TOPICS = ("photosynthesis", "black holes", "jazz", "neural networks", "volcanoes", "tides")


def drive_example(app: Flask, clock: FakeClock, *, minutes: float = 5.0, step: float = 15.0) -> int:
    """Some minutes of traffic of varying volume, a burst of failures (which opens the LLM
    circuit breaker) and some slow calls, with the page's data read after every *step*
    seconds, as an open page does. Returns the requests made."""
    client = app.test_client()
    made = 0
    steps = int(minutes * 60 / step)
    client.get("/status?format=json")
    for i in range(steps):
        volume = int(12 + 8 * math.sin(i / 2.5))
        for n in range(volume):
            topic = TOPICS[(i * 7 + n) % len(TOPICS)]
            query = ""
            if steps // 2 <= i < steps // 2 + 2 and n % 2 == 0:
                query = "?fail=1"  # an incident: half the calls fail for half a minute
            elif n == 0 and i % 3 == 0:
                query = "?delay=0.05"
            path = ("/api/generate", "/api/subtopics", "/api/images")[n % 3]
            client.post(path + query, json={"topic": topic}).close()
            made += 1
        clock.advance(step)
        client.get("/status?format=json").close()
    return made


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("docs/_static/status-page.png")
    clock = FakeClock(1_767_225_600.0)
    app = example_app(clock)
    drive_example(app, clock)
    out.parent.mkdir(parents=True, exist_ok=True)
    profile = out.parent / ".chromium-profile"
    try:
        with serving(app) as base:
            run_chromium(profile, f"{base}/status", f"--screenshot={out.resolve()}", size=DOCS_SIZE)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
