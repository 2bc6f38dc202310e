"""Sentry through the real sentry-sdk, with a transport that keeps envelopes in memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from flask import Flask, request
from prometheus_client import CollectorRegistry
from sentry_sdk.envelope import Envelope

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.integrations.sentry import FILTERED, Scrubber
from tests.conftest import AppFactory

DSN = "http://public@127.0.0.1:1/1"  # never contacted: the transport below sends nothing
GOOGLE_KEY = "AIza" + "B" * 35
TOKEN = "metrics-token-0123456789"


class CapturingTransport(sentry_sdk.Transport):
    """Collects the events the SDK would send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture(autouse=True)
def _no_sentry_leaks() -> Iterator[None]:
    """Sentry's client is process-global: start and end every test without one."""
    assert not sentry_sdk.get_client().is_active()
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def transport() -> CapturingTransport:
    return CapturingTransport()


def _config(transport: CapturingTransport, **extra: Any) -> dict[str, Any]:
    return {
        "APPMETRICS_SENTRY_DSN": DSN,
        "APPMETRICS_SENTRY_ENVIRONMENT": "staging",
        "APPMETRICS_SENTRY_RELEASE": "backend@1.2.3",
        "APPMETRICS_SENTRY_OPTIONS": {"transport": transport},
        **extra,
    }


def _add_leaky_route(app: Flask) -> None:
    @app.post("/generate")
    def generate() -> str:
        prompt = request.get_json()["prompt"]  # a local variable Sentry would capture
        api_key = GOOGLE_KEY
        raise ValueError(f"Gemini refused key {api_key} for prompt of {len(prompt)} chars")


def test_unhandled_error_reaches_sentry_and_the_error_counter(
    app_factory: AppFactory, registry: CollectorRegistry, transport: CapturingTransport
) -> None:
    app = app_factory(_config(transport))
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert len(transport.events) == 1
    event = transport.events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["environment"] == "staging"
    assert event["release"] == "backend@1.2.3"
    assert not sentry_sdk.get_client().should_send_default_pii()
    errors = {"endpoint": "/boom", "error_type": "RuntimeError"}
    assert registry.get_sample_value("application_errors_total", errors) == 1.0


def test_events_carry_no_secrets_or_prompt_text(
    app_factory: AppFactory, transport: CapturingTransport
) -> None:
    app = app_factory(_config(transport, APPMETRICS_AUTH_TOKEN=TOKEN))
    _add_leaky_route(app)
    client = app.test_client()
    response = client.post(
        f"/generate?api_key={GOOGLE_KEY}&page=2",
        json={"prompt": "my very private prompt", "temperature": 0.2},
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Api-Key": "abcdef123456",
            "Cookie": "session=abc123",
        },
    )
    assert response.status_code == 500
    (event,) = transport.events
    text = repr(event)
    for secret in (GOOGLE_KEY, TOKEN, "abcdef123456", "my very private prompt", "abc123"):
        assert secret not in text
    assert FILTERED in event["exception"]["values"][-1]["value"]
    assert "page=2" in event["request"]["query_string"]  # the harmless parts survive
    headers = event["request"]["headers"]
    assert headers["Authorization"] == FILTERED
    assert event["request"]["data"]["temperature"] == 0.2
    assert "user" not in event  # send_default_pii=False: no IP, no user


def test_sentry_is_initialised_once_per_process(
    registry: CollectorRegistry, transport: CapturingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    ext = FlaskMetrics(registry=registry)
    caplog.set_level(logging.INFO, logger="flask_appmetrics")
    apps = []
    for _ in range(3):
        app = Flask("factory_app")
        app.config.update(_config(transport))
        ext.init_app(app)
        apps.append(app)
    client = sentry_sdk.get_client()
    assert client.is_active()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Sentry error tracking initialized") == 1
    assert messages.count("Prometheus metrics initialized successfully") == 3


def test_startup_log_lines_in_the_seeds_order(
    app_factory: AppFactory, transport: CapturingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_appmetrics")
    app_factory(_config(transport))
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_appmetrics"]
    expected = [
        "Prometheus metrics initialized successfully",
        "Metrics available at /metrics endpoint",
        "Sentry error tracking initialized",
    ]
    assert [m for m in messages if m in expected] == expected


def test_sentry_dsn_environment_variable(
    app_factory: AppFactory, transport: CapturingTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    app = app_factory({"APPMETRICS_SENTRY_OPTIONS": {"transport": transport}})
    assert sentry_sdk.get_client().is_active()
    assert app.test_client().get("/boom").status_code == 500
    assert len(transport.events) == 1
    assert transport.events[0]["environment"] == "production"


def test_no_dsn_leaves_sentry_off(app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    app_factory()
    assert not sentry_sdk.get_client().is_active()


def test_empty_dsn_turns_the_environment_variable_off(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    app_factory({"APPMETRICS_SENTRY_DSN": ""})
    assert not sentry_sdk.get_client().is_active()


def test_sentry_initialised_by_the_app_is_left_alone(
    app_factory: AppFactory, transport: CapturingTransport
) -> None:
    sentry_sdk.init(dsn=DSN, transport=transport, environment="mine")
    own = sentry_sdk.get_client()
    app_factory(_config(CapturingTransport()))
    assert sentry_sdk.get_client() is own


@pytest.mark.parametrize(
    "options",
    [{"send_default_pii": True}, {"dsn": DSN}, {"release": "x"}],
)
def test_refused_sentry_options(app_factory: AppFactory, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        app_factory({"APPMETRICS_SENTRY_DSN": DSN, "APPMETRICS_SENTRY_OPTIONS": options})
    assert info.value.key == "APPMETRICS_SENTRY_OPTIONS"
    assert not sentry_sdk.get_client().is_active()


def test_scrubber_on_a_payload() -> None:
    scrub = Scrubber(fields=["x-tenant"], secrets=["hunter2hunter2"])
    event: dict[str, Any] = {
        "extra": {
            "GEMINI_API_KEY": "k",
            "user_prompt": "tell me",
            "total_tokens": 42,
            "auth_token": "t",
            "X-Tenant": "acme",
            "note": "password is hunter2hunter2",
        },
        "breadcrumbs": {
            "values": [
                {"message": "GET https://user:pw@example.com/x?token=abc&b=1"},
                {"message": "header Authorization: Bearer abcdefghijkl"},
            ]
        },
        "headers": [["Authorization", "Basic dXNlcjpwYXNz"], ["Accept", "text/html"]],
    }
    scrub(event)
    extra = event["extra"]
    assert extra["GEMINI_API_KEY"] == extra["user_prompt"] == extra["auth_token"] == FILTERED
    assert extra["X-Tenant"] == FILTERED
    assert extra["total_tokens"] == 42
    assert extra["note"] == f"password is {FILTERED}"
    crumbs = event["breadcrumbs"]["values"]
    assert crumbs[0]["message"] == f"GET https://{FILTERED}@example.com/x?token={FILTERED}&b=1"
    assert crumbs[1]["message"] == f"header Authorization: Bearer {FILTERED}"
    assert event["headers"] == [["Authorization", FILTERED], ["Accept", "text/html"]]


def test_a_second_dsn_in_the_same_process_is_reported_not_applied(
    registry: CollectorRegistry, transport: CapturingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    ext = FlaskMetrics(registry=registry)
    first, second = Flask("first"), Flask("second")
    first.config.update(_config(transport))
    second.config.update(_config(transport, APPMETRICS_SENTRY_DSN="http://other@127.0.0.1:1/2"))
    ext.init_app(first)
    client = sentry_sdk.get_client()
    ext.init_app(second)
    assert sentry_sdk.get_client() is client
    assert client.dsn == DSN
    assert any("another DSN" in r.getMessage() for r in caplog.records)


def test_the_apps_own_before_send_runs_first_and_is_scrubbed_after(
    app_factory: AppFactory, transport: CapturingTransport
) -> None:
    seen: list[str] = []

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        exc_type = hint["exc_info"][0].__name__
        seen.append(exc_type)
        if exc_type == "KeyError":
            return None  # the app drops these
        event.setdefault("extra", {})["upstream_api_key"] = "leaked-by-the-app"
        return event

    app = app_factory(_config(transport, APPMETRICS_SENTRY_OPTIONS={
        "transport": transport, "before_send": before_send,
    }))  # fmt: skip

    @app.get("/keyerror")
    def keyerror() -> str:
        raise KeyError("dropped")

    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/keyerror").status_code == 500
    # (Sentry may offer the dropped error twice: once from Flask's signal, once from the
    # error log line; its dedupe only remembers errors that were sent.)
    assert set(seen) == {"RuntimeError", "KeyError"}
    (event,) = transport.events
    assert event["extra"]["upstream_api_key"] == FILTERED
