"""Every kind of response body, served the way WSGI servers serve it: call the app, iterate
the body, close it. Each request is recorded exactly once (``http_requests_total``, the
duration histogram, the health window), its duration runs to the end of the body, and
``http_requests_in_progress`` returns to 0.

Files matter most: for ``send_file``, ``send_from_directory`` and the static route, werkzeug
hands the file wrapper to the server as it is (``direct_passthrough``), so the response's own
close callbacks never run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, send_file, send_from_directory, stream_with_context
from gunicorn.http.wsgi import FileWrapper as GunicornFileWrapper
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wsgi import FileWrapper as WerkzeugFileWrapper

from flask_appmetrics import FlaskMetrics

STATIC = "/static/<path:filename>"
CSS = b"body { color: #222; }\n" * 50


def create_app(root: Path, registry: CollectorRegistry) -> Flask:
    """A host app as people write them: a factory, a blueprint with its own files, the
    static folder, downloads and streamed exports."""
    (root / "static").mkdir()
    (root / "static" / "style.css").write_bytes(CSS)
    (root / "reports").mkdir()
    (root / "reports" / "q1.csv").write_text("month,total\njan,1\nfeb,2\n")
    (root / "docs").mkdir()
    (root / "docs" / "guide.txt").write_text("read me\n")

    app = Flask("host_app", static_folder=str(root / "static"))
    reports = Blueprint("reports", __name__, url_prefix="/reports")
    docs = Blueprint("docs", __name__, static_folder=str(root / "docs"), static_url_path="/docs")

    @reports.get("/<name>")
    def download(name: str) -> Response:
        return send_from_directory(root / "reports", name)

    @reports.get("/latest")
    def latest() -> Response:
        return send_file(root / "reports" / "q1.csv")

    @reports.get("/generated")
    def generated() -> Response:
        return send_file(io.BytesIO(b"x" * 10_000), mimetype="application/octet-stream")

    @app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[str]:
            for i in range(3):
                yield f"row {i}\n"

        return Response(rows(), mimetype="text/plain")

    @app.get("/export-with-context")
    def export_with_context() -> Response:
        def rows() -> Iterator[str]:
            yield "a\n"
            yield "b\n"

        return Response(stream_with_context(rows()), mimetype="text/plain")

    @app.get("/")
    def index() -> str:
        return "<h1>home</h1>"

    app.register_blueprint(reports)
    app.register_blueprint(docs)
    FlaskMetrics(app, registry=registry)
    return app


@pytest.fixture
def host(tmp_path: Path, registry: CollectorRegistry) -> Flask:
    return create_app(tmp_path, registry)


def serve(
    app: Flask,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    file_wrapper: type | None = None,
    before_close: Callable[[], None] | None = None,
) -> tuple[str, bytes, Any]:
    """One request as a WSGI server serves it: returns ``(status, body, headers)``."""
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    if file_wrapper is not None:
        environ["wsgi.file_wrapper"] = file_wrapper
    app_iter, status, response_headers = run_wsgi_app(app, environ, buffered=False)
    try:
        body = b"".join(app_iter)
        if before_close is not None:
            before_close()
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return status, body, response_headers


def total(registry: CollectorRegistry, method: str, endpoint: str, status: str) -> float:
    labels = {"method": method, "endpoint": endpoint, "status": status}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def observed(registry: CollectorRegistry, method: str, endpoint: str) -> float:
    labels = {"method": method, "endpoint": endpoint}
    return registry.get_sample_value("http_request_duration_seconds_count", labels) or 0.0


def in_progress(registry: CollectorRegistry, method: str, endpoint: str) -> float:
    labels = {"method": method, "endpoint": endpoint}
    return registry.get_sample_value("http_requests_in_progress", labels) or 0.0


def window_requests(app: Flask) -> int:
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.health is not None
    return state.health.requests.counts().requests


BODIES = [
    pytest.param("/", {}, "/", "200", b"<h1>home</h1>", id="list"),
    pytest.param("/export", {}, "/export", "200", b"row 0\nrow 1\nrow 2\n", id="generator"),
    pytest.param(
        "/export-with-context",
        {},
        "/export-with-context",
        "200",
        b"a\nb\n",
        id="stream_with_context",
    ),
    pytest.param("/static/style.css", {}, STATIC, "200", CSS, id="static"),
    pytest.param(
        "/reports/q1.csv",
        {},
        "/reports/<name>",
        "200",
        b"month,total\njan,1\nfeb,2\n",
        id="send_from_directory",
    ),
    pytest.param(
        "/reports/latest",
        {},
        "/reports/latest",
        "200",
        b"month,total\njan,1\nfeb,2\n",
        id="send_file_path",
    ),
    pytest.param(
        "/reports/generated", {}, "/reports/generated", "200", b"x" * 10_000, id="send_file_bytes"
    ),
    pytest.param(
        "/docs/guide.txt", {}, "/docs/<path:filename>", "200", b"read me\n", id="blueprint_static"
    ),
    pytest.param(
        "/static/style.css",
        {"Range": "bytes=0-9"},
        STATIC,
        "206",
        CSS[:10],
        id="range",
    ),
]


def _iterable(cls: type) -> bool:
    return hasattr(cls, "__iter__")


@pytest.mark.parametrize("file_wrapper", [None, WerkzeugFileWrapper, GunicornFileWrapper])
@pytest.mark.parametrize(("path", "headers", "endpoint", "status", "content"), BODIES)
def test_each_body_is_recorded_once_when_the_server_closes_it(  # noqa: PLR0917 - parametrized
    host: Flask,
    registry: CollectorRegistry,
    path: str,
    headers: dict[str, str],
    endpoint: str,
    status: str,
    content: bytes,
    file_wrapper: type | None,
) -> None:
    if "Range" in headers and file_wrapper is GunicornFileWrapper and not _iterable(file_wrapper):
        # werkzeug's range wrapper keeps iter(body), which for a FileWrapper with only
        # __getitem__ has no close(): the file stays open, with or without the extension.
        pytest.skip("gunicorn before 26: werkzeug cannot close a range of its FileWrapper")
    for n in range(1, 4):
        served_status, body, _ = serve(host, path, headers=headers, file_wrapper=file_wrapper)
        assert served_status.startswith(status)
        assert body == content
        assert total(registry, "GET", endpoint, status) == n
        assert observed(registry, "GET", endpoint) == n
        assert in_progress(registry, "GET", endpoint) == 0.0
        assert window_requests(host) == n


def test_head_of_a_static_file_is_recorded(host: Flask, registry: CollectorRegistry) -> None:
    served_status, body, _ = serve(host, "/static/style.css", method="HEAD")
    assert served_status.startswith("200")
    assert body == b""
    assert total(registry, "HEAD", STATIC, "200") == 1.0
    assert in_progress(registry, "HEAD", STATIC) == 0.0
    assert window_requests(host) == 1


def test_a_conditional_get_answered_304_is_recorded(
    host: Flask, registry: CollectorRegistry
) -> None:
    _, _, headers = serve(host, "/static/style.css")
    conditional = {"If-None-Match": headers["ETag"]}
    served_status, body, _ = serve(host, "/static/style.css", headers=conditional)
    assert served_status.startswith("304")
    assert body == b""
    assert total(registry, "GET", STATIC, "304") == 1.0
    assert total(registry, "GET", STATIC, "200") == 1.0
    assert in_progress(registry, "GET", STATIC) == 0.0
    assert window_requests(host) == 2


def test_the_duration_of_a_file_runs_to_the_close_of_its_body(
    host: Flask, registry: CollectorRegistry
) -> None:
    pause = 0.1

    def still_sending() -> None:
        # The server is still sending: the request is not over.
        assert in_progress(registry, "GET", STATIC) == 1.0
        assert total(registry, "GET", STATIC, "200") == 0.0
        time.sleep(pause)

    serve(host, "/static/style.css", before_close=still_sending)
    labels = {"method": "GET", "endpoint": STATIC}
    assert (registry.get_sample_value("http_request_duration_seconds_sum", labels) or 0.0) >= pause
    assert total(registry, "GET", STATIC, "200") == 1.0
    assert in_progress(registry, "GET", STATIC) == 0.0


def test_the_servers_own_file_wrapper_is_handed_back_so_sendfile_still_works(
    host: Flask, registry: CollectorRegistry
) -> None:
    # gunicorn sends a body with sendfile() only when it is an instance of the
    # wsgi.file_wrapper it put in the environ.
    environ = EnvironBuilder(path="/reports/latest").get_environ()
    environ["wsgi.file_wrapper"] = GunicornFileWrapper
    started: list[str] = []
    body = host(environ, lambda status, headers, exc_info=None: started.append(status))
    assert isinstance(body, GunicornFileWrapper)
    assert b"".join(body) == b"month,total\njan,1\nfeb,2\n"
    assert total(registry, "GET", "/reports/latest", "200") == 0.0
    body.close()
    assert started == ["200 OK"]
    assert total(registry, "GET", "/reports/latest", "200") == 1.0
    assert in_progress(registry, "GET", "/reports/latest") == 0.0
    body.close()  # a second close records nothing more
    assert total(registry, "GET", "/reports/latest", "200") == 1.0


def uwsgi_file_wrapper(filelike: Any, block_size: int = 8192) -> Any:
    """What uWSGI puts in ``wsgi.file_wrapper``: a function that notes the file for
    ``sendfile()`` and returns the file itself."""
    return filelike


def test_a_bare_file_body_is_recorded_and_read_in_blocks(
    host: Flask, registry: CollectorRegistry
) -> None:
    big = b"\x00" * 100_000  # binary, no newline: "lines" would be the whole file
    assert host.static_folder is not None
    (Path(host.static_folder) / "blob.bin").write_bytes(big)
    environ = EnvironBuilder(path="/static/blob.bin").get_environ()
    environ["wsgi.file_wrapper"] = uwsgi_file_wrapper
    body = host(environ, lambda status, headers, exc_info=None: None)
    chunks = list(body)
    assert b"".join(chunks) == big
    assert max(len(chunk) for chunk in chunks) <= 8192
    body.close()  # type: ignore[attr-defined]
    assert total(registry, "GET", STATIC, "200") == 1.0
    assert in_progress(registry, "GET", STATIC) == 0.0


def test_a_file_body_closed_without_being_read_is_recorded(
    host: Flask, registry: CollectorRegistry
) -> None:
    # A client that disconnects: the server closes the body without iterating it.
    environ = EnvironBuilder(path="/static/style.css").get_environ()
    body = host(environ, lambda status, headers, exc_info=None: None)
    body.close()  # type: ignore[attr-defined]
    assert total(registry, "GET", STATIC, "200") == 1.0
    assert in_progress(registry, "GET", STATIC) == 0.0


def test_a_failing_file_close_still_ends_the_request(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    class Flaky(io.BytesIO):
        def close(self) -> None:
            super().close()
            raise OSError("disk went away")

    app = Flask("flaky")

    @app.get("/blob")
    def blob() -> Response:
        return send_file(Flaky(b"data"), mimetype="application/octet-stream")

    FlaskMetrics(app, registry=registry)
    environ = EnvironBuilder(path="/blob").get_environ()
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"data"
    with pytest.raises(OSError, match="disk went away"):
        body.close()  # type: ignore[attr-defined]
    assert total(registry, "GET", "/blob", "200") == 1.0
    assert in_progress(registry, "GET", "/blob") == 0.0


@pytest.mark.parametrize("propagate", [False, True])
def test_a_streamed_body_replaced_by_an_error_page_is_recorded_as_500(
    registry: CollectorRegistry, propagate: bool
) -> None:
    # Saving the session fails after every after_request hook ran: Flask answers its
    # 500 page (or re-raises, with PROPAGATE_EXCEPTIONS) instead of the streamed body,
    # which is never sent nor closed.
    from flask.sessions import SecureCookieSessionInterface

    class BrokenSessions(SecureCookieSessionInterface):
        def save_session(self, *args: Any) -> None:
            raise RuntimeError("session store down")

    app = Flask("sessions")
    app.secret_key = "test"
    app.config["PROPAGATE_EXCEPTIONS"] = propagate
    app.session_interface = BrokenSessions()

    @app.get("/download")
    def download() -> Response:
        from flask import session

        session["seen"] = True
        return send_file(io.BytesIO(b"data"), mimetype="application/octet-stream")

    FlaskMetrics(app, registry=registry)
    if propagate:
        with pytest.raises(RuntimeError, match="session store down"):
            serve(app, "/download")
    else:
        served_status, _, _ = serve(app, "/download")
        assert served_status.startswith("500")
    assert total(registry, "GET", "/download", "500") == 1.0
    assert total(registry, "GET", "/download", "200") == 0.0
    assert in_progress(registry, "GET", "/download") == 0.0
