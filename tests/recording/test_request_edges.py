"""Requests that end somewhere other than where a view returns, served the way WSGI servers
serve them (call the app, iterate the body, close it): each is recorded exactly once, with
the status the client got and the duration to the end of its body, and
``http_requests_in_progress`` returns to 0."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, abort, send_file, stream_with_context
from flask.sessions import SecureCookieSessionInterface
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder

from flask_appmetrics import FlaskMetrics


def make_app(before_init: Callable[[Flask], None] | None = None) -> tuple[Flask, CollectorRegistry]:
    registry = CollectorRegistry()
    app = Flask(__name__)
    if before_init is not None:
        before_init(app)
    FlaskMetrics(app, registry=registry)
    return app, registry


def serve(app: Flask, path: str) -> tuple[list[str], bytes, BaseException | None]:
    """One request as a WSGI server serves it; returns the status line, the body and what
    iterating the body raised."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
        statuses.append(status)
        return lambda data: None

    environ = EnvironBuilder(path=path).get_environ()
    body = app(environ, start_response)
    received = b""
    error: BaseException | None = None
    try:
        for chunk in body:
            received += chunk
    except Exception as exc:  # the server logs it and drops the connection
        error = exc
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return statuses, received, error


def requests(registry: CollectorRegistry, endpoint: str, status: str) -> float | None:
    return registry.get_sample_value(
        "http_requests_total", {"method": "GET", "endpoint": endpoint, "status": status}
    )


def count(registry: CollectorRegistry, endpoint: str) -> float | None:
    return registry.get_sample_value(
        "http_request_duration_seconds_count", {"method": "GET", "endpoint": endpoint}
    )


def in_progress(registry: CollectorRegistry, endpoint: str) -> float | None:
    return registry.get_sample_value(
        "http_requests_in_progress", {"method": "GET", "endpoint": endpoint}
    )


def test_a_middleware_that_copies_the_environ_loses_no_request() -> None:
    def copying(app: Flask) -> None:
        inner = app.wsgi_app

        def middleware(environ: dict[str, Any], start_response: Any) -> Any:
            return inner(dict(environ), start_response)

        app.wsgi_app = middleware  # type: ignore[method-assign]

    app, registry = make_app(before_init=copying)

    @app.get("/download")
    def download() -> Response:
        return send_file(io.BytesIO(b"x" * 20000), mimetype="application/octet-stream")

    for _ in range(2):
        statuses, body, _ = serve(app, "/download")
        assert statuses == ["200 OK"]
        assert len(body) == 20000
    assert requests(registry, "/download", "200") == 2
    assert count(registry, "/download") == 2
    assert in_progress(registry, "/download") == 0


def test_a_response_replaced_after_saving_the_session_failed_is_a_500() -> None:
    class FailingSessions(SecureCookieSessionInterface):
        def save_session(self, app: Flask, session: Any, response: Response) -> None:
            raise RuntimeError("session store down")

    app, registry = make_app()
    app.secret_key = "k" * 32
    app.session_interface = FailingSessions()
    app.logger.disabled = True

    @app.get("/s")
    def view() -> str:
        return "ok"

    statuses, _, _ = serve(app, "/s")
    assert statuses == ["500 INTERNAL SERVER ERROR"]
    assert requests(registry, "/s", "500") == 1
    assert requests(registry, "/s", "200") is None
    assert count(registry, "/s") == 1
    assert in_progress(registry, "/s") == 0


def test_a_failing_teardown_request_is_a_500() -> None:
    app, registry = make_app()

    @app.get("/t")
    def view() -> str:
        return "ok"

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:
        raise RuntimeError("teardown fails")

    with pytest.raises(RuntimeError):  # the server answers 500
        serve(app, "/t")
    assert requests(registry, "/t", "500") == 1
    assert requests(registry, "/t", "200") is None
    assert count(registry, "/t") == 1
    assert in_progress(registry, "/t") == 0


def test_a_request_refused_by_a_url_value_preprocessor_is_recorded() -> None:
    app, registry = make_app()

    @app.url_value_preprocessor
    def pull_lang(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and values.pop("lang", None) not in ("en", "fr"):
            abort(404)

    @app.get("/<lang>/page")
    def page() -> str:
        return "ok"

    statuses, _, _ = serve(app, "/xx/page")
    assert statuses == ["404 NOT FOUND"]
    assert requests(registry, "/<lang>/page", "404") == 1
    assert count(registry, "/<lang>/page") == 1
    assert in_progress(registry, "/<lang>/page") == 0


@pytest.mark.parametrize("with_context", [False, True])
def test_an_exception_in_the_middle_of_a_streamed_body_is_a_500(with_context: bool) -> None:
    app, registry = make_app()

    @app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[bytes]:
            yield b"first row\n"
            raise RuntimeError("database gone")

        return Response(stream_with_context(rows()) if with_context else rows())

    statuses, body, error = serve(app, "/export")
    assert statuses == ["200 OK"]
    assert body == b"first row\n"
    assert isinstance(error, RuntimeError)
    assert requests(registry, "/export", "500") == 1
    assert requests(registry, "/export", "200") is None
    assert in_progress(registry, "/export") == 0
    assert (
        registry.get_sample_value(
            "application_errors_total", {"endpoint": "/export", "error_type": "RuntimeError"}
        )
        == 1
    )


def test_a_class_based_iterable_body_is_timed_to_its_close() -> None:
    app, registry = make_app()

    class SlowBody:
        def __iter__(self) -> Iterator[bytes]:
            time.sleep(0.2)
            yield b"done"

    @app.get("/slow")
    def slow() -> Response:
        return Response(SlowBody())

    statuses, body, _ = serve(app, "/slow")
    assert statuses == ["200 OK"]
    assert body == b"done"
    assert requests(registry, "/slow", "200") == 1
    assert in_progress(registry, "/slow") == 0
    duration = registry.get_sample_value(
        "http_request_duration_seconds_sum", {"method": "GET", "endpoint": "/slow"}
    )
    assert duration is not None
    assert duration >= 0.2


def test_a_tracer_patching_the_flask_class_later_is_still_called() -> None:
    # Tracers patch Flask's request steps on the class, sometimes after the app exists.
    class Traced(Flask):
        pass

    registry = CollectorRegistry()
    app = Traced(__name__)
    FlaskMetrics(app, registry=registry)

    @app.get("/traced")
    def traced() -> str:
        return "ok"

    steps: list[str] = []
    preprocess, finalize = Flask.preprocess_request, Flask.finalize_request

    def traced_preprocess(self: Flask) -> Any:
        steps.append("preprocess")
        return preprocess(self)

    def traced_finalize(self: Flask, rv: Any, from_error_handler: bool = False) -> Any:
        steps.append("finalize")
        return finalize(self, rv, from_error_handler)

    Traced.preprocess_request = traced_preprocess  # type: ignore[method-assign]
    Traced.finalize_request = traced_finalize  # type: ignore[method-assign]
    statuses, body, _ = serve(app, "/traced")
    assert (statuses, body) == (["200 OK"], b"ok")
    assert steps == ["preprocess", "finalize"]
    assert requests(registry, "/traced", "200") == 1.0


def test_a_wrapper_another_extension_set_on_the_app_first_is_kept() -> None:
    seen: list[int] = []

    def wrap(app: Flask) -> None:
        finalize = app.finalize_request

        def finalize_request(rv: Any, from_error_handler: bool = False) -> Any:
            response = finalize(rv, from_error_handler)
            response.status_code = 202
            seen.append(response.status_code)
            return response

        app.finalize_request = finalize_request  # type: ignore[method-assign]

    app, registry = make_app(wrap)

    @app.get("/wrapped")
    def wrapped() -> str:
        return "ok"

    statuses, _, _ = serve(app, "/wrapped")
    assert statuses == ["202 ACCEPTED"]
    assert seen == [202]
    assert requests(registry, "/wrapped", "202") == 1.0


def test_the_status_of_an_internal_error_handler_is_the_one_recorded() -> None:
    app, registry = make_app()

    @app.errorhandler(500)
    def unavailable(error: Exception) -> tuple[str, int]:
        return "try later", 503

    @app.get("/broken")
    def broken() -> str:
        raise RuntimeError("boom")

    statuses, body, _ = serve(app, "/broken")
    assert (statuses, body) == (["503 SERVICE UNAVAILABLE"], b"try later")
    assert requests(registry, "/broken", "503") == 1.0
    assert requests(registry, "/broken", "500") is None
    assert in_progress(registry, "/broken") == 0.0
