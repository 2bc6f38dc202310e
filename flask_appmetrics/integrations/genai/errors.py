"""What kind of failure ended an LLM call: a bounded ``error_type``, quota refusals, and the
calls a circuit breaker refused before they reached the API.

Works on the exceptions themselves, without importing google-genai, its HTTP library
(httpx or httpx2, whichever it runs on) or pybreaker: each is recognised by its attributes
and class names, so this module costs nothing to an app without them.

``error_type`` follows OpenTelemetry's ``error.type`` (the provider's error code, else a
low-cardinality identifier, else ``_OTHER``). The values, all of them (an instrumentation
should document the list):

* a google-genai ``errors.APIError`` (``ClientError`` 4xx, ``ServerError`` 5xx): Google's
  canonical status of the error body, e.g. ``RESOURCE_EXHAUSTED`` (HTTP 429, a quota),
  ``INVALID_ARGUMENT`` (400), ``PERMISSION_DENIED`` (403), ``NOT_FOUND`` (404), ``INTERNAL``
  (500), ``UNAVAILABLE`` (503), ``DEADLINE_EXCEEDED`` (504); an error without a canonical
  status (an HTML page from a proxy) gives its HTTP status code, ``"502"``;
* ``timeout``: the HTTP library's timeouts, ``TimeoutError`` (``asyncio.TimeoutError``);
* ``connection_error``: connecting failed or the connection broke (the HTTP library's
  transport errors, ``ConnectionError``);
* ``invalid_response``: google-genai could not parse the answer
  (``UnknownApiResponseError``);
* ``_OTHER``: anything else.

An exception that wraps another (``raise GenerationError(...) from api_error``) is
classified by the first of the chain (``__cause__``, then ``__context__``) that says more
than ``_OTHER``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Google's canonical error codes (``google.rpc.Code``), but ``OK``.
CANONICAL_STATUSES = (
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
INVALID_RESPONSE = "invalid_response"
OTHER = "_OTHER"
#: The status of a quota refusal (HTTP 429).
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
#: HTTP status codes an ``error_type`` may be (an API error without a canonical status).
HTTP_CODES = tuple(str(code) for code in range(400, 600))
#: Every ``error_type`` value.
ERROR_TYPES = frozenset((*CANONICAL_STATUSES, *HTTP_CODES, TIMEOUT, CONNECTION_ERROR,
                         INVALID_RESPONSE, OTHER))  # fmt: skip

# The HTTP library's transport errors, by class name (httpx and httpx2 share them).
_TIMEOUT_CLASSES = frozenset({"TimeoutException"})
_CONNECTION_CLASSES = frozenset({"TransportError", "NetworkError", "ProtocolError"})
_HTTP_MODULES = ("httpx", "httpx2", "httpcore", "aiohttp", "requests", "urllib3")
# How far along __cause__/__context__ a wrapped error is looked for.
_CHAIN_DEPTH = 5


@dataclass(frozen=True)
class QuotaRefusal:
    """What a 429 said about the quota it hit: which limit (``rpm``, ``tpm``, ``rpd``,
    ``tpd``, or ``unknown``) and the limit's value, when the API reported them."""

    limit: str = "unknown"
    value: int | None = None


@dataclass(frozen=True)
class Failure:
    """How a call ended badly.

    :param error_type: one of :data:`ERROR_TYPES`.
    :param rejected: the call never reached the API (a circuit breaker refused it).
    :param refusal: the quota refusal, for a ``RESOURCE_EXHAUSTED`` error.
    """

    error_type: str
    rejected: bool = False
    refusal: QuotaRefusal | None = None


def error_type(value: object) -> str:
    """A given error type as a label value: itself if it is one of :data:`ERROR_TYPES`,
    else ``_OTHER`` (so that a caller's own values cannot grow the series)."""
    return value if isinstance(value, str) and value in ERROR_TYPES else OTHER


def describe(exc: BaseException) -> Failure:
    """Classify *exc*, the exception that ended a call."""
    if is_breaker_rejection(exc):
        return Failure(OTHER, rejected=True)
    found = OTHER
    source: BaseException = exc
    for candidate in _chain(exc):
        kind = _classify(candidate)
        if kind != OTHER:
            found, source = kind, candidate
            break
    refusal = (
        quota_refusal(getattr(source, "details", None)) if found == RESOURCE_EXHAUSTED else None
    )
    return Failure(found, refusal=refusal)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _class_names(exc: BaseException) -> Iterator[tuple[str, str]]:
    for cls in type(exc).__mro__:
        yield cls.__name__, cls.__module__


def _classify(exc: BaseException) -> str:
    if _is_api_error(exc):
        status = getattr(exc, "status", None)
        if isinstance(status, str) and status in CANONICAL_STATUSES:
            return status
        code = getattr(exc, "code", None)
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
            return str(code)
        return OTHER
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    names = list(_class_names(exc))
    if any(name in _TIMEOUT_CLASSES for name, _ in names):
        return TIMEOUT
    if isinstance(exc, ConnectionError):
        return CONNECTION_ERROR
    if any(
        name in _CONNECTION_CLASSES and module.split(".")[0] in _HTTP_MODULES
        for name, module in names
    ):
        return CONNECTION_ERROR
    if any(name == "UnknownApiResponseError" for name, _ in names):
        return INVALID_RESPONSE
    return OTHER


def _is_api_error(exc: BaseException) -> bool:
    return any(
        name == "APIError" and module.startswith("google.genai")
        for name, module in _class_names(exc)
    )


def is_breaker_rejection(exc: BaseException) -> bool:
    """Whether *exc* is pybreaker refusing a call without making it (the breaker is open).

    pybreaker raises ``CircuitBreakerError`` in two cases: refusing a call while open (the
    call never ran), and when the call that just failed trips the breaker (the call ran and
    failed; pybreaker raises the new error while handling the call's, with the call's
    traceback). The second is a failed call, not a rejection: it is told apart by the
    call's exception, whose traceback the new error carries on.
    """
    if not any(
        name == "CircuitBreakerError" and module.split(".")[0] == "pybreaker"
        for name, module in _class_names(exc)
    ):
        return False
    failed = exc.__context__
    if failed is None or failed.__traceback__ is None:
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb is failed.__traceback__:
            return False  # the trip of a call that ran
        tb = tb.tb_next
    return True


def quota_refusal(details: object) -> QuotaRefusal:
    """The quota a 429 names in its ``google.rpc.QuotaFailure``, from an ``APIError``'s
    ``details`` (the error body). Gemini names per-minute and per-day quotas of requests
    and of tokens, e.g. ``GenerateRequestsPerMinutePerProjectPerModel``, with the limit in
    ``quotaValue``; anything else is ``unknown``."""
    for violation in _violations(details):
        quota_id = violation.get("quotaId") or violation.get("quotaMetric") or ""
        limit = _limit_name(str(quota_id))
        if limit == "unknown":
            continue
        value = violation.get("quotaValue")
        try:
            number = int(str(value)) if value is not None else None
        except ValueError:
            number = None
        if number is not None and not 0 < number <= 2**53:
            number = None
        return QuotaRefusal(limit, number)
    return QuotaRefusal()


def _violations(details: object) -> Iterator[Mapping[str, Any]]:
    body = details.get("error", details) if isinstance(details, Mapping) else None
    entries = body.get("details") if isinstance(body, Mapping) else None
    if not isinstance(entries, list):
        return
    for entry in entries[:10]:
        if not isinstance(entry, Mapping) or "QuotaFailure" not in str(entry.get("@type", "")):
            continue
        violations = entry.get("violations")
        if isinstance(violations, list):
            yield from (v for v in violations[:10] if isinstance(v, Mapping))


def _limit_name(quota_id: str) -> str:
    text = quota_id.lower()
    if "perminute" in text:
        period = "m"
    elif "perday" in text:
        period = "d"
    else:
        return "unknown"
    if "token" in text:
        return "tp" + period
    if "request" in text:
        return "rp" + period
    return "unknown"
