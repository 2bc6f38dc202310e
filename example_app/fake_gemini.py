"""A local server that speaks the Gemini REST API, so google-genai's real client runs offline.

Point a client at it and every call goes through google-genai's own request building,
HTTP transport, SSE parsing and error handling::

    server = FakeGemini().start()
    client = genai.Client(
        api_key="offline", http_options=types.HttpOptions(base_url=server.url)
    )
    client.models.generate_content(model="gemini-2.5-flash", contents="hello")

Endpoints (any API version prefix, ``/v1`` or ``/v1beta``): ``models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (Server-Sent Events, one ``data:`` event per chunk, the
last with the finish reason and ``usageMetadata``), ``:countTokens``, ``:embedContent`` and
``:batchEmbedContents``.

A call answers as its *scenario* says: the ``X-Fake-Gemini-Scenario`` request header, else
a ``[fake:NAME]`` marker in the prompt, else the server's default (``"normal"``):

==================  =============================================================================
``normal``          200; text, ``finishReason`` ``STOP``, usage with prompt and candidate tokens
``thinking``        as ``normal``, with ``thoughtsTokenCount`` (a thinking model's reasoning)
``cached``          as ``normal``, with ``cachedContentTokenCount`` (part of the prompt)
``max-tokens``      200; a truncated answer, ``finishReason`` ``MAX_TOKENS``
``safety``          200; no content, ``finishReason`` ``SAFETY`` (the answer was blocked)
``prompt-blocked``  200; no candidate, ``promptFeedback.blockReason`` ``SAFETY``
``429``             429 ``RESOURCE_EXHAUSTED`` with a ``QuotaFailure`` naming a per-minute request
                    limit (:attr:`FakeGemini.rpm_limit`) and a ``RetryInfo``, as Gemini sends
``429-bare``        429 ``RESOURCE_EXHAUSTED`` with no details
``400``, ``403``,   errors with Google's JSON body: ``INVALID_ARGUMENT``, ``PERMISSION_DENIED``,
``500``, ``503``    ``INTERNAL``, ``UNAVAILABLE``
``slow``            waits :attr:`FakeGemini.slow_seconds` before answering (a client timeout)
``stream-error``    streams two chunks, then an ``INTERNAL`` error event
==================  =============================================================================

The ``X-Fake-Gemini-Delay`` header (seconds, at most 10) delays the answer, and, for a
stream, each chunk. Standard library only: the example app runs it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: Every scenario the server knows.
SCENARIOS = (
    "normal",
    "thinking",
    "cached",
    "max-tokens",
    "safety",
    "prompt-blocked",
    "429",
    "429-bare",
    "400",
    "403",
    "500",
    "503",
    "slow",
    "stream-error",
)
#: The request header that picks a scenario.
SCENARIO_HEADER = "X-Fake-Gemini-Scenario"
#: The request header that delays the answer (and each streamed chunk), in seconds.
DELAY_HEADER = "X-Fake-Gemini-Delay"
#: Longest delay a request may ask for, in seconds.
MAX_DELAY = 10.0

_MARKER = re.compile(r"\[fake:([a-z0-9-]+)\]")
_PATH = re.compile(r"^/[^/]+/(?:.*/)?models/([^/:]+):([A-Za-z]+)$")
_ERRORS = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "403": (403, "PERMISSION_DENIED", "Permission denied on resource project."),
    "500": (500, "INTERNAL", "An internal error has occurred."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}
_WORDS = (
    "foundations", "history", "principles", "methods", "applications", "examples", "challenges",
    "tools", "models", "theory", "practice", "patterns", "limits", "trade-offs", "future",
    "ethics", "measurement", "design", "analysis", "systems", "evolution",
)  # fmt: skip


def tokens_of(text: str) -> int:
    """Gemini's rule of thumb: about four characters per token (at least one)."""
    return max(1, math.ceil(len(text) / 4))


def _prompt_text(body: dict[str, Any]) -> str:
    """The text of every part of every content of a request."""
    texts: list[str] = []
    contents = body.get("contents") or body.get("requests") or []
    if isinstance(contents, dict):
        contents = [contents]
    for content in contents:
        if not isinstance(content, dict):
            continue
        inner = content.get("content", content)  # batchEmbedContents wraps each content
        for part in inner.get("parts", []) if isinstance(inner, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return " ".join(texts)


def answer_text(prompt: str, lines: int = 8) -> str:
    """A deterministic answer shaped like a model's numbered list: same prompt, same answer.
    Its subject is the prompt's text after its last colon (markers left out)."""
    prompt = _MARKER.sub("", prompt)
    digest = hashlib.sha256(prompt.encode()).digest()
    subject = prompt.rsplit(":", 1)[-1].strip() or "the topic"
    out = []
    for i in range(lines):
        word = _WORDS[digest[i] % len(_WORDS)]
        other = _WORDS[digest[i + 8] % len(_WORDS)]
        out.append(f"{i + 1}. {word.capitalize()} of {subject}: {other} and {word}.")
    return "\n".join(out)


class FakeGemini:
    """The fake API server. :meth:`start` serves it from a daemon thread on 127.0.0.1.

    :param port: the port; ``0`` picks a free one.
    :param scenario: the default scenario of calls that name none.
    """

    def __init__(self, port: int = 0, *, scenario: str = "normal") -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario: expected one of {SCENARIOS}, got {scenario!r}")
        self.scenario = scenario
        #: The per-minute request limit a ``429`` names in its ``QuotaFailure``.
        self.rpm_limit = 15
        #: How long a ``slow`` call waits, in seconds.
        self.slow_seconds = 2.0
        #: How many chunks a stream sends (text split across them).
        self.stream_chunks = 3
        #: Calls received, by ``(method, scenario)``.
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give google-genai (``HttpOptions(base_url=...)``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGemini:
        """Serve in a daemon thread; returns the server."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="fake-gemini", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str | None = None, scenario: str | None = None) -> int:
        """Calls received, of *method* and *scenario* if given."""
        with self._lock:
            return sum(
                n
                for (m, s), n in self.calls.items()
                if (method is None or m == method) and (scenario is None or s == scenario)
            )

    def note(self, method: str, scenario: str) -> None:
        with self._lock:
            self.calls[(method, scenario)] += 1

    # -- bodies --------------------------------------------------------------------------

    def error_body(self, scenario: str) -> tuple[int, dict[str, Any]]:
        if scenario in ("429", "429-bare"):
            error: dict[str, Any] = {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and "
                "billing details.",
                "status": "RESOURCE_EXHAUSTED",
            }
            if scenario == "429":
                error["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                                "quotaValue": str(self.rpm_limit),
                            }
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "21s"},
                ]
            return 429, {"error": error}
        code, status, message = _ERRORS[scenario]
        return code, {"error": {"code": code, "message": message, "status": status}}

    def response(self, model: str, prompt: str, scenario: str) -> dict[str, Any]:
        """A ``GenerateContentResponse`` body for a non-error scenario."""
        prompt_tokens = tokens_of(prompt)
        text = answer_text(prompt, 3 if scenario == "max-tokens" else 8)
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
        body: dict[str, Any] = {"modelVersion": f"{model}-001", "responseId": "fake"}
        if scenario == "prompt-blocked":
            body["promptFeedback"] = {"blockReason": "SAFETY"}
            usage["totalTokenCount"] = prompt_tokens
        elif scenario == "safety":
            body["candidates"] = [
                {
                    "finishReason": "SAFETY",
                    "index": 0,
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                    ],
                }
            ]
            usage["totalTokenCount"] = prompt_tokens
        else:
            finish = "MAX_TOKENS" if scenario == "max-tokens" else "STOP"
            body["candidates"] = [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": finish,
                    "index": 0,
                }
            ]
            output = tokens_of(text)
            usage["candidatesTokenCount"] = output
            total = prompt_tokens + output
            if scenario == "thinking":
                usage["thoughtsTokenCount"] = 3 * output
                total += 3 * output
            if scenario == "cached":
                usage["cachedContentTokenCount"] = prompt_tokens // 2
            usage["totalTokenCount"] = total
        body["usageMetadata"] = usage
        return body

    def chunks(self, model: str, prompt: str, scenario: str) -> Iterator[dict[str, Any]]:
        """The SSE events of a streamed answer: text pieces, then the finish and usage."""
        whole = self.response(model, prompt, "normal" if scenario == "stream-error" else scenario)
        candidates = whole.get("candidates") or []
        parts = candidates[0].get("content", {}).get("parts", []) if candidates else []
        text = parts[0]["text"] if parts else ""
        pieces = max(1, self.stream_chunks)
        size = max(1, math.ceil(len(text) / pieces))
        slices = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for index, piece in enumerate(slices):
            last = index == len(slices) - 1
            if scenario == "stream-error" and index == 2:
                yield self.error_body("500")[1]
                return
            chunk: dict[str, Any] = {"modelVersion": whole["modelVersion"], "responseId": "fake"}
            if text:
                candidate: dict[str, Any] = {
                    "content": {"parts": [{"text": piece}], "role": "model"},
                    "index": 0,
                }
                if last:
                    candidate["finishReason"] = candidates[0]["finishReason"]
                chunk["candidates"] = [candidate]
            elif candidates:
                chunk["candidates"] = candidates
            if "promptFeedback" in whole:
                chunk["promptFeedback"] = whole["promptFeedback"]
            usage = dict(whole["usageMetadata"])
            if not last:
                # Gemini sends the prompt count early and the totals on the last chunk.
                usage = {"promptTokenCount": usage["promptTokenCount"]}
            chunk["usageMetadata"] = usage
            yield chunk


def _handler(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add 40 ms to every answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests and the example's log have no use for access lines

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            match = _PATH.match(urlsplit(self.path).path)
            if match is None or not isinstance(body, dict):
                self._json(
                    404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}
                )
                return
            model, method = match.groups()
            prompt = _prompt_text(body)
            scenario = self._scenario(prompt)
            fake.note(method, scenario)
            delay = self._delay()
            if scenario == "slow":
                delay = max(delay, fake.slow_seconds)
            if delay and method != "streamGenerateContent":
                time.sleep(delay)
            if scenario in ("429", "429-bare", *_ERRORS):
                self._json(*fake.error_body(scenario))
            elif method == "generateContent":
                self._json(200, fake.response(model, prompt, scenario))
            elif method == "streamGenerateContent":
                self._stream(fake.chunks(model, prompt, scenario), delay)
            elif method == "countTokens":
                self._json(200, {"totalTokens": tokens_of(prompt)})
            elif method == "embedContent":
                self._json(200, {"embedding": {"values": _vector(prompt)}})
            elif method == "batchEmbedContents":
                requests = body.get("requests") or []
                vectors = [{"values": _vector(_prompt_text({"contents": [r]}))} for r in requests]
                self._json(200, {"embeddings": vectors})
            else:
                self._json(
                    404,
                    {"error": {"code": 404, "message": "Unknown method", "status": "NOT_FOUND"}},
                )

        def _scenario(self, prompt: str) -> str:
            named = self.headers.get(SCENARIO_HEADER)
            if named is None:
                marker = _MARKER.search(prompt)
                named = marker.group(1) if marker else fake.scenario
            return named if named in SCENARIOS else "normal"

        def _delay(self) -> float:
            try:
                delay = float(self.headers.get(DELAY_HEADER) or 0.0)
            except ValueError:
                return 0.0
            return min(max(delay, 0.0), MAX_DELAY) if math.isfinite(delay) else 0.0

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chunks: Iterator[dict[str, Any]], delay: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in chunks:
                    if delay:
                        time.sleep(delay)
                    event = b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: an abandoned stream

    return Handler


def _vector(text: str, size: int = 8) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 3)) % 97) / 97.0 for i in range(size)]


_shared: FakeGemini | None = None
_shared_lock = threading.Lock()


def shared() -> FakeGemini:
    """The process's fake server, started on first use (apps created in one process, one
    per test say, share it; each worker of a pre-fork server starts its own)."""
    global _shared  # noqa: PLW0603 - one server per process, by design
    with _shared_lock:
        if _shared is None:
            _shared = FakeGemini().start()
        return _shared
