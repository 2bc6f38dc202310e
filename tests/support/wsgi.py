"""Drive a WSGI app the way servers do: call it, iterate the body, close it.

werkzeug's test client leaves response bodies open unless asked to close them, which no
server does; a request a server completes always ends with ``close()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

WSGIApp = Any


@dataclass
class Served:
    """What the client received, after the server closed the body."""

    status: int
    headers: Headers
    body: bytes
    closed: bool = field(default=False)

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def serve(
    app: WSGIApp,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | str | Mapping[str, str] | None = None,
    json: Any = None,
    file_wrapper: bool = False,
    chunk_delay: float = 0.0,
    disconnect_after: int | None = None,
) -> Served:
    """One request as a WSGI server serves it: call, iterate the whole body, close.

    :param file_wrapper: offer ``wsgi.file_wrapper`` as gunicorn does, so ``send_file``
        hands the server a file wrapper instead of an iterator of chunks.
    :param chunk_delay: seconds to send each chunk, as to a slow client.
    :param disconnect_after: the client goes away after this many chunks: the server stops
        iterating and closes the body.
    """
    builder = EnvironBuilder(
        path=path, method=method, headers=list((headers or {}).items()), data=data, json=json
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    if file_wrapper:
        environ["wsgi.file_wrapper"] = _FileWrapper
    started: list[Any] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        started[:] = [status, response_headers]
        return lambda chunk: None

    body = app(environ, start_response)
    chunks: list[bytes] = []
    closed = False
    try:
        for chunk in body:
            if disconnect_after is not None and len(chunks) >= disconnect_after:
                break
            chunks.append(chunk)
            if chunk_delay:
                time.sleep(chunk_delay)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
            closed = True
    status, response_headers = started
    if method == "HEAD":
        # A server sends no body for HEAD whatever the app produced.
        chunks = []
    return Served(int(status.split(" ", 1)[0]), Headers(response_headers), b"".join(chunks), closed)


class _FileWrapper:
    """PEP 3333's ``wsgi.file_wrapper``, as servers implement it (gunicorn's FileWrapper)."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> _FileWrapper:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.block_size)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        if hasattr(self.filelike, "close"):
            self.filelike.close()


def serve_all(app: WSGIApp, paths: Iterable[str]) -> list[Served]:
    return [serve(app, p) for p in paths]
