"""Hostile HTTP traffic for the reliability tests and benchmarks (not a test module).

:class:`HostileTraffic` makes WSGI environs with random paths (unicode, percent-encoded,
huge, matching and not matching the app's rules), methods (standard, unknown, lower-case,
long), headers (``Accept``, ``Accept-Encoding``, ``Authorization``, cookies, user agents,
forwarded addresses) and user identities, reproducibly from a seed. :func:`drive` pushes
them straight through the WSGI callable (no socket, no test client), so what grows is the
app and its instrumentation, nothing else. ``benchmarks/`` imports this module too.
"""

from __future__ import annotations

import gc
import io
import random
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, abort, stream_with_context

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STANDARD = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
_ODD_METHODS = ("BREW", "PROPFIND", "get", "MKCOL", "X" * 64, "SEARCH", "QUERY", "M-POST")
_ACCEPTS = (
    "",
    "*/*",
    "text/html",
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    "application/openmetrics-text;version=0.0.1",
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/json;q=abc",
    ";;;,,,",
)
_ENCODINGS = ("", "gzip", "gzip;q=0", "deflate, br", "identity", "*", "GZIP;q=1.0", "\x00")
#: Exception classes raised by ``/raise/<int:kind>``: more than ``APPMETRICS_MAX_ERROR_TYPES``
#: (50), so the error_type label's cap is reached.
ERROR_TYPES: tuple[type[Exception], ...] = tuple(
    type(f"HostileError{i}", (Exception,), {}) for i in range(80)
)
#: The app's rule templates that :class:`HostileTraffic` hits, besides unmatched URLs.
RULES = ("/items/<int:item_id>", "/echo", "/raise/<int:kind>", "/abort/<int:code>", "/stream")


def hostile_app(name: str = "hostile") -> Flask:
    """An app with a few parametrised rules, one raising many exception types.

    Flask's own exception log is silenced: thousands of tracebacks would fill the test's
    log capture and be measured as our memory.
    """
    app = Flask(name)
    app.log_exception = lambda exc_info: None  # type: ignore[method-assign]

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id % 1000}

    @app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def echo() -> str:
        return "ok"

    @app.get("/raise/<int:kind>")
    def raise_(kind: int) -> str:
        raise ERROR_TYPES[kind % len(ERROR_TYPES)]("hostile")

    @app.get("/abort/<int:code>")
    def abort_(code: int) -> str:
        abort(code if code in {400, 401, 403, 404, 409, 418, 429, 500, 503} else 400)

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))

    return app


def _junk(rng: random.Random, size: int) -> str:
    """Random text: ASCII, punctuation, unicode (astral plane included), control chars."""
    alphabet = string.ascii_letters + string.digits + "/%.-_~!$&'()*+,;=:@ é中😀\t"
    return "".join(rng.choice(alphabet) for _ in range(size))


@dataclass
class HostileTraffic:
    """A reproducible stream of hostile requests.

    :param seed: the random seed.
    """

    seed: int = 0
    rng: random.Random = field(init=False)
    sent: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def method(self) -> str:
        rng = self.rng
        return rng.choice(_STANDARD) if rng.random() < 0.8 else rng.choice(_ODD_METHODS)

    def path(self) -> str:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return f"/items/{rng.randrange(10 ** rng.randrange(1, 30))}"
        if kind == 1:
            return "/echo"
        if kind == 2:
            return f"/raise/{rng.randrange(1000)}"
        if kind == 3:
            return f"/abort/{rng.choice((400, 401, 403, 404, 409, 418, 429, 500, 503, 7))}"
        if kind == 4:
            return "/stream"
        if kind == 5:
            return f"/items/{_junk(rng, rng.randrange(1, 40))}"
        if kind == 6:
            # Huge and deep: the kind of URL scanners send.
            return "/" + "/".join(_junk(rng, 8) for _ in range(rng.randrange(1, 200)))
        # Random 404s: the bulk of hostile traffic (scanners probing /wp-login.php, ...).
        return "/" + _junk(rng, rng.randrange(1, 60))

    def headers(self) -> dict[str, str]:
        rng = self.rng
        headers = {
            "Accept": rng.choice(_ACCEPTS),
            "Accept-Encoding": rng.choice(_ENCODINGS),
            "User-Agent": _junk(rng, rng.randrange(0, 80)),
            "X-Forwarded-For": ".".join(str(rng.randrange(256)) for _ in range(4)),
        }
        # A new user identity on most requests: a bearer token or a cookie.
        if rng.random() < 0.7:
            headers["Authorization"] = f"Bearer {rng.getrandbits(128):032x}"
        if rng.random() < 0.3:
            headers["Cookie"] = f"session={_junk(rng, rng.randrange(1, 100))}"
        return headers

    def environ(self) -> dict[str, Any]:
        rng = self.rng
        self.sent += 1
        query = _junk(rng, rng.randrange(0, 30)) if rng.random() < 0.3 else ""
        body = b"x" * rng.randrange(1, 64) if rng.random() < 0.2 else b""
        return environ_for(
            self.method(),
            self.path(),
            query=query,
            headers=self.headers(),
            body=body,
            remote_addr=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        )

    def every_combination(self) -> Iterator[dict[str, Any]]:
        """One request per (method, rule or unmatched, status kind): the warm-up that
        creates every series hostile traffic can reach, so later traffic adds none."""
        paths = ["/items/1", "/echo", "/stream", "/no/such/page"]
        paths += [f"/raise/{i}" for i in range(len(ERROR_TYPES))]
        paths += [f"/abort/{c}" for c in (400, 401, 403, 404, 409, 418, 429, 500, 503, 7)]
        for method in _STANDARD + _ODD_METHODS:
            for path in paths:
                yield environ_for(method, path)


def _wsgi(text: str) -> str:
    """*text* as a WSGI server passes it: its UTF-8 bytes, decoded as latin-1."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def environ_for(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    remote_addr: str = "127.0.0.1",
) -> dict[str, Any]:
    """A WSGI environ as a server builds it from the raw request line and headers.

    Built by hand rather than with werkzeug's ``EnvironBuilder``, which parses and
    normalises the URL (a path starting with ``//`` becomes a host name, say): servers
    pass hostile paths through as they came.
    """
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi(path),
        "QUERY_STRING": _wsgi(query),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/octet-stream"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = _wsgi(value)
    return environ


def respond(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, bytes]:
    """One request through the WSGI callable, body read and closed: (status, body)."""
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)

    body = app(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0], data


def call(app: WSGIApp, environ: dict[str, Any]) -> str:
    """One request through the WSGI callable, body consumed and closed; returns the status."""
    return respond(app, environ)[0]


def drive(app: WSGIApp, environs: Iterable[dict[str, Any]]) -> int:
    """Send every environ to *app*; return how many were sent."""
    sent = 0
    for environ in environs:
        call(app, environ)
        sent += 1
    return sent


def hostile(traffic: HostileTraffic, count: int) -> Iterator[dict[str, Any]]:
    return (traffic.environ() for _ in range(count))


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS`` of ``/proc/self/status``), after a full
    garbage collection so that only memory still held is counted."""
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def scrape(app: WSGIApp, path: str = "/metrics") -> bytes:
    """The body of ``GET path`` (plain text exposition)."""
    status, body = respond(app, environ_for("GET", path))
    if not status.startswith("200"):
        raise AssertionError(f"GET {path} answered {status}")
    return body
