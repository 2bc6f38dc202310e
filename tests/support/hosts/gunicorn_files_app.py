"""The app tests/system/test_gunicorn_files.py and tests/system/test_multiworker_warning.py
serve with real gunicorn: static files, downloads and a streamed export, as a host app serves them.

``TEST_STATIC_DIR`` is its static folder. Each request appends to ``bodies-<pid>`` in
``TEST_SIGNAL_DIR`` whether the body gunicorn received is an instance of its own
``wsgi.file_wrapper`` (the type it sends with ``sendfile()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, send_file, send_from_directory

from flask_appmetrics import FlaskMetrics

_STATIC = Path(os.environ.get("TEST_STATIC_DIR", "."))
_SIGNALS = Path(os.environ.get("TEST_SIGNAL_DIR", "."))

app = Flask(__name__, static_folder=str(_STATIC))


@app.get("/download/<name>")
def download(name: str) -> Response:
    return send_from_directory(_STATIC, name)


@app.get("/report")
def report() -> Response:
    return send_file(_STATIC / "file-0.css")


@app.get("/export")
def export() -> Response:
    def rows() -> Iterator[str]:
        for i in range(100):
            yield f"row {i}\n"

    return Response(rows(), mimetype="text/plain")


FlaskMetrics(app)
_inner = app.wsgi_app


def _note_body(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = _inner(environ, start_response)
    file_wrapper = environ.get("wsgi.file_wrapper")
    native = isinstance(file_wrapper, type) and isinstance(body, file_wrapper)
    with (_SIGNALS / f"bodies-{os.getpid()}").open("a") as log:
        kind = "file_wrapper" if native else "other"
        log.write(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {kind}\n")
    return body


# Outside the extension's own wrapper, as a middleware added after init_app would be.
app.wsgi_app = _note_body  # type: ignore[method-assign]
