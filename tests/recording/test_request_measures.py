"""Opt-in body sizes and queue time: off by default, exact when on."""

from __future__ import annotations

import http.client
import io
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask, Response, request, send_file, stream_with_context
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder

from flask_appmetrics.recording.request_measures import MAX_QUEUE_SECONDS, request_start
from tests.support.apps import AppFactory
from tests.support.wsgi import serve

SIZES = {"APPMETRICS_BODY_SIZES": True}
QUEUE = {"APPMETRICS_QUEUE_TIME": True}
OPT_IN = (
    "http_request_size_bytes",
    "http_response_size_bytes",
    "http_request_queue_seconds",
    "http_request_queue_start_ignored_total",
)
FILE = b"0123456789" * 1000


def observations(registry: CollectorRegistry, family: str, **labels: str) -> tuple[float, float]:
    """(count, sum) of a histogram series."""
    count = registry.get_sample_value(family + "_count", labels) or 0.0
    total = registry.get_sample_value(family + "_sum", labels) or 0.0
    return count, total


def add_routes(app: Flask) -> None:
    @app.post("/upload")
    def upload() -> str:
        return str(len(request.get_data()))

    @app.get("/chunks")
    def chunks() -> Response:
        def body() -> Iterator[bytes]:
            yield b"x" * 100
            yield b"y" * 50

        return Response(stream_with_context(body()))

    @app.get("/file")
    def file() -> Response:
        return send_file(io.BytesIO(FILE), mimetype="application/octet-stream")

    @app.get("/empty")
    def empty() -> tuple[str, int]:
        return "", 204


def test_off_by_default_no_family_is_registered(app: Flask, registry: CollectorRegistry) -> None:
    serve(app, "/items/1", headers={"X-Request-Start": "t=1", "Content-Length": "0"})
    names = {metric.name for metric in registry.collect()}
    assert not {name.removesuffix("_total") for name in OPT_IN} & names


def test_request_sizes_from_content_length_and_chunked_bodies(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(SIZES)
    add_routes(app)
    labels = {"method": "POST", "endpoint": "/upload"}
    assert serve(app, "/upload", method="POST", data=b"a" * 300).body == b"300"
    # A chunked upload: no Content-Length, counted as the app reads it.
    builder = EnvironBuilder(path="/upload", method="POST", input_stream=io.BytesIO(b"b" * 70))
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    body = app(environ, lambda *args: None)
    assert b"".join(body) == b"70"
    getattr(body, "close", lambda: None)()
    assert observations(registry, "http_request_size_bytes", **labels) == (2, 370)
    assert observations(registry, "http_response_size_bytes", **labels) == (2, 5)


@pytest.mark.parametrize("max_content_length", [None, 10 * 1024 * 1024])
def test_a_chunked_upload_through_werkzeugs_server_counts_what_the_app_read(
    app_factory: AppFactory, registry: CollectorRegistry, max_content_length: int | None
) -> None:
    # With MAX_CONTENT_LENGTH, werkzeug limits the server's stream and reads it with
    # readinto; without, with read.
    app = app_factory({**SIZES, "MAX_CONTENT_LENGTH": max_content_length})
    add_routes(app)
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        chunks = iter([b"a" * 3000, b"b" * 2000])
        connection.request("POST", "/upload", body=chunks, encode_chunked=True)
        response = connection.getresponse()
        assert response.read() == b"5000"
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    labels = {"method": "POST", "endpoint": "/upload"}
    assert observations(registry, "http_request_size_bytes", **labels) == (1, 5000)


def test_response_sizes_as_sent(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory(SIZES)
    add_routes(app)

    def sent(endpoint: str, method: str = "GET") -> tuple[float, float]:
        return observations(registry, "http_response_size_bytes", method=method, endpoint=endpoint)

    assert serve(app, "/chunks").body == b"x" * 100 + b"y" * 50
    assert sent("/chunks") == (1, 150)
    # A client gone after the first chunk: only what was yielded counts.
    serve(app, "/chunks", disconnect_after=1)
    assert sent("/chunks") == (2, 150 + 150)  # the second chunk was already yielded
    # A file the server sends itself (sendfile): its length.
    assert len(serve(app, "/file", file_wrapper=True).body) == len(FILE)
    assert sent("/file") == (1, len(FILE))
    # The same file streamed by werkzeug's iterator: the bytes yielded.
    assert len(serve(app, "/file").body) == len(FILE)
    assert sent("/file") == (2, 2 * len(FILE))
    # No body: HEAD and 204.
    serve(app, "/items/1", method="HEAD")
    assert sent("/items/<int:item_id>", "HEAD") == (1, 0)
    assert serve(app, "/empty").status == 204
    assert sent("/empty") == (1, 0)
    # A plain response: its body; a failing view: Flask's error page, as sent.
    page = serve(app, "/boom")
    assert page.status == 500
    assert sent("/boom") == (1, len(page.body))


def test_an_error_page_counts_sizes_of_its_route(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(SIZES)
    page = serve(app, "/missing", data=b"12345", method="POST")
    assert page.status == 404
    labels = {"method": "POST", "endpoint": "<unmatched>"}
    assert observations(registry, "http_request_size_bytes", **labels) == (1, 5)
    assert observations(registry, "http_response_size_bytes", **labels) == (1, len(page.body))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("t=1700000000.25", 1700000000.25),
        ("1700000000250", 1700000000.25),
        ("t=1700000000250000", 1700000000.25),
        ("1700000000250000000", 1700000000.25),
        (" t=1700000000 ", 1700000000.0),
    ],
)
def test_x_request_start_formats(header: str, seconds: float) -> None:
    assert request_start(header) == pytest.approx(seconds)


@pytest.mark.parametrize("header", ["t=", "abc", "t=-5", "t=nan", "t=inf", "0", "t=1e400"])
def test_x_request_start_refused(header: str) -> None:
    with pytest.raises(ValueError, match="not a request start time"):
        request_start(header)


def test_queue_time_observed_and_bad_values_counted(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(QUEUE)

    def ignored(reason: str) -> float:
        value = registry.get_sample_value(
            "http_request_queue_start_ignored_total", {"reason": reason}
        )
        assert value is not None  # created at 0
        return value

    assert ignored("malformed") == ignored("negative") == ignored("too_large") == 0
    before = time.time()
    serve(app, "/items/1", headers={"X-Request-Start": f"t={before - 0.25:.6f}"})
    serve(app, "/items/1", headers={"X-Request-Start": str(int((before - 0.5) * 1000))})
    count, total = observations(registry, "http_request_queue_seconds")
    assert count == 2
    assert 0.75 <= total < 0.75 + 2 * (time.time() - before) + 0.01

    serve(app, "/items/1", headers={"X-Request-Start": "t=soon"})
    serve(app, "/items/1", headers={"X-Request-Start": f"t={time.time() + 60}"})
    serve(app, "/items/1", headers={"X-Request-Start": f"t={before - MAX_QUEUE_SECONDS - 1}"})
    serve(app, "/items/1")  # no header: nothing
    assert (ignored("malformed"), ignored("negative"), ignored("too_large")) == (1, 1, 1)
    assert observations(registry, "http_request_queue_seconds")[0] == 2
    # The requests themselves are all counted as usual.
    labels = {"method": "GET", "endpoint": "/items/<int:item_id>", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 6


def test_excluded_paths_are_not_measured(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({**SIZES, **QUEUE, "APPMETRICS_EXCLUDE_PATHS": ["/items"]})
    serve(app, "/items/1", headers={"X-Request-Start": f"t={time.time()}"})
    assert observations(registry, "http_request_queue_seconds") == (0, 0)
    assert registry.get_sample_value("http_request_size_bytes_count", {}) is None
