"""The app that tests/system/test_gunicorn.py serves with real gunicorn workers.

``/block/<name>`` holds its worker until the test creates ``release-<name>`` in
``TEST_SIGNAL_DIR`` (after writing the worker's pid to ``started-<name>``), so the test
knows exactly which worker serves which request, without timing assumptions.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from flask import Flask, Response, request, send_file

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.helpers import record_quota_usage

_SIGNALS = Path(os.environ.get("TEST_SIGNAL_DIR", "."))
_BLOCK_LIMIT_SECONDS = 60.0

metrics = FlaskMetrics()
app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id, "pid": os.getpid()}


@app.get("/slow/<int:ms>")
def slow(ms: int) -> dict[str, int]:
    # Lands in a slower duration bucket than /items: exemplars of two buckets.
    time.sleep(ms / 1000)
    return {"pid": os.getpid()}


@app.get("/block/<name>")
def block(name: str) -> dict[str, int]:
    breaker_state = request.args.get("breaker")
    if breaker_state is not None:
        _set_breaker(int(breaker_state))
    (_SIGNALS / f"started-{name}.tmp").write_text(str(os.getpid()))
    (_SIGNALS / f"started-{name}.tmp").rename(_SIGNALS / f"started-{name}")
    deadline = time.monotonic() + _BLOCK_LIMIT_SECONDS
    while not (_SIGNALS / f"release-{name}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"pid": os.getpid()}


@app.get("/cache/<result>")
def cache(result: str) -> dict[str, int]:
    state = FlaskMetrics.state(app)
    assert state is not None
    state.metric_set.counter("cache_operations_total").labels("get", result).inc()
    return {"pid": os.getpid()}


@app.get("/quota/<int:tokens>")
def quota(tokens: int) -> dict[str, int]:
    record_quota_usage(requests=1, tokens=tokens)
    return {"pid": os.getpid()}


def _set_breaker(state: int) -> None:
    app_state = FlaskMetrics.state(app)
    assert app_state is not None
    app_state.metric_set.gauge("circuit_breaker_state").labels("gemini").set(state)


@app.get("/file/<int:size>")
def file(size: int) -> Response:
    # Under gunicorn: its wsgi.file_wrapper, sent with sendfile().
    return send_file(io.BytesIO(b"f" * size), mimetype="application/octet-stream")


if os.environ.get("TEST_MEASURES"):
    app.config["APPMETRICS_BODY_SIZES"] = True
    app.config["APPMETRICS_QUEUE_TIME"] = True
if os.environ.get("TEST_REDIS_URL"):
    app.config["APPMETRICS_REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    # Write-through: the test checks exact shared values right after the requests.
    app.config["APPMETRICS_REDIS_FLUSH_SECONDS"] = 0.0
metrics.init_app(app)
