"""The routes the core tests exercise, and the type of the ``app_factory`` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Flask, Response, abort, stream_with_context

AppFactory = Callable[..., Flask]


def add_test_routes(app: Flask) -> None:
    """Routes the core tests exercise."""

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def echo() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403)

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))
