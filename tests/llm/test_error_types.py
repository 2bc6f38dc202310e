"""``error_type`` and quota refusals from google-genai's own exceptions, and the bounds of
every label a failure or a response can set."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import record_gemini_usage, track_gemini_call
from flask_appmetrics.integrations.genai import errors, responses

genai_errors = pytest.importorskip("google.genai.errors")
types = pytest.importorskip("google.genai.types")


def quota_body(quota_id: str, value: str = "10") -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": quota_id, "quotaValue": value}],
                },
            ],
        }
    }


@pytest.mark.parametrize(
    ("quota_id", "limit"),
    [
        ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "rpm"),
        ("GenerateContentInputTokensPerModelPerMinute-FreeTier", "tpm"),
        ("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "rpd"),
        ("GenerateContentInputTokensPerModelPerDay", "tpd"),
        ("SomethingElse", "unknown"),
    ],
)
def test_quota_failure_names_the_limit(quota_id: str, limit: str) -> None:
    exc = genai_errors.ClientError(429, quota_body(quota_id))
    failure = errors.describe(exc)
    assert failure.error_type == "RESOURCE_EXHAUSTED"
    assert failure.refusal is not None
    assert failure.refusal.limit == limit
    assert failure.refusal.value == (10 if limit != "unknown" else None)


@pytest.mark.parametrize("value", ["-1", "ten", "1e99", "0"])
def test_a_strange_quota_value_is_not_a_limit(value: str) -> None:
    exc = genai_errors.ClientError(429, quota_body("RequestsPerMinute", value))
    refusal = errors.describe(exc).refusal
    assert refusal is not None
    assert refusal.limit == "rpm"
    assert refusal.value is None


def test_an_error_without_a_canonical_status_is_its_http_code() -> None:
    # A proxy's HTML page: google-genai puts the reason phrase where the status would be.
    exc = genai_errors.ServerError(502, {"message": "<html>", "status": "Bad Gateway"})
    assert errors.describe(exc).error_type == "502"
    assert errors.describe(genai_errors.APIError(302, {})).error_type == "_OTHER"


def test_a_wrapped_error_is_classified_by_the_error_it_wraps() -> None:
    class GenerationError(Exception):
        pass

    def generate() -> None:
        try:
            raise genai_errors.ClientError(403, {"error": {"status": "PERMISSION_DENIED"}})
        except genai_errors.APIError as exc:
            raise GenerationError("failed") from exc

    with pytest.raises(GenerationError) as wrapped:
        generate()
    assert errors.describe(wrapped.value).error_type == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError("t"), "timeout"),
        (ConnectionResetError("r"), "connection_error"),
        pytest.param(
            getattr(genai_errors, "UnknownApiResponseError", Exception)("not json"),
            "invalid_response",
            marks=pytest.mark.skipif(
                not hasattr(genai_errors, "UnknownApiResponseError"),
                reason="google-genai before 1.10 has no UnknownApiResponseError",
            ),
        ),
        (RuntimeError("ours"), "_OTHER"),
        (KeyError("k"), "_OTHER"),
    ],
)
def test_other_failures(exc: BaseException, kind: str) -> None:
    assert errors.describe(exc).error_type == kind


def test_the_http_librarys_transport_errors() -> None:
    httpx = pytest.importorskip("httpx2")
    request = httpx.Request("POST", "http://127.0.0.1/")
    assert errors.describe(httpx.ReadTimeout("t", request=request)).error_type == "timeout"
    assert errors.describe(httpx.ConnectError("c", request=request)).error_type == (
        "connection_error"
    )
    assert errors.describe(httpx.RemoteProtocolError("p", request=request)).error_type == (
        "connection_error"
    )


def test_every_error_type_is_bounded(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        for index in range(100):
            record_gemini_usage("/api/x", "m", status="error", error_type=f"MINE_{index}")
        record_gemini_usage("/api/x", "m", status="error", error_type="UNAVAILABLE")
        record_gemini_usage("/api/x", "m", status="error")
    labels = {"endpoint": "/api/x", "model": "m"}
    found = {
        sample.labels["error_type"]: sample.value
        for family in registry.collect()
        if family.name == "gemini_api_errors"
        for sample in family.samples
        if sample.name == "gemini_api_errors_total" and sample.labels["endpoint"] == "/api/x"
    }
    assert found == {"_OTHER": 101.0, "UNAVAILABLE": 1.0}
    assert registry.get_sample_value("gemini_api_calls_total", {**labels, "status": "error"}) == 102


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "success", "error_type": "INTERNAL"}, "error_type"),
        ({"status": "error", "error_type": 5}, "error_type"),
        ({"status": "error", "error_type": "INTERNAL", "refused_limit": "rpm"}, "refused_limit"),
        (
            {"status": "error", "error_type": "RESOURCE_EXHAUSTED", "refused_limit": "rps"},
            "refused_limit",
        ),
        ({"finish_reasons": "STOP"}, "finish_reasons"),
        ({"finish_reasons": ["STOP"] * 9}, "finish_reasons"),
        ({"duration": 1.0, "time_to_first_chunk": 2.0}, "time_to_first_chunk"),
        ({"operation": "chat"}, "operation"),
        ({"provider": "openai"}, "provider"),
        ({"status": "paused"}, "status"),
    ],
)
def test_bad_payloads_are_refused_by_name(
    app_factory: Any, payload: dict[str, Any], field: str
) -> None:
    from flask_appmetrics import signals

    app = app_factory({"APPMETRICS_STRICT": True})
    with pytest.raises((TypeError, ValueError), match=field):
        signals.gemini_call.send(app, endpoint="/api/x", model="m", **payload)


def test_finish_reasons_are_bounded(app: Flask, registry: CollectorRegistry) -> None:
    with app.app_context():
        record_gemini_usage(
            "/api/x",
            "m",
            usage_metadata={
                "candidates": [{"finishReason": "NEW_REASON"}],
                "usage_metadata": {"prompt_token_count": 3},
            },
        )
        with track_gemini_call("/api/x", "m") as call:
            call.record_response(
                types.GenerateContentResponse(
                    candidates=[types.Candidate(finish_reason=types.FinishReason.RECITATION)]
                )
            )
    reasons = {
        sample.labels["finish_reason"]
        for family in registry.collect()
        if family.name == "gemini_api_finish_reasons"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert reasons == {"_OTHER", "RECITATION"}
    assert "PROMPT_SAFETY" in responses.known_reasons()
