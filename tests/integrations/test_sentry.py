"""Sentry through the real sentry-sdk, with a transport that keeps envelopes in memory."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sentry_sdk
from flask import Flask, current_app, request
from prometheus_client import CollectorRegistry
from sentry_sdk.envelope import Envelope

from flask_appmetrics import ConfigurationError, FlaskMetrics
from flask_appmetrics.integrations.sentry import FILTERED, Scrubber
from tests.support.apps import AppFactory
from tests.support.redis_server import free_port

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


def test_startup_log_lines_in_the_original_services_order(
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


# -- a host app full of secrets, with Sentry logs on: nothing secret in any envelope ---------

REDIS_PASSWORD = "RedisPassw0rdXyz"
DB_PASSWORD = "DbPassw0rdQwe"
AMQP_PASSWORD = "AmqpPassw0rdRty"
SECRET_KEY = "flask-secret-key-Uio0123456789"
QUERY_SECRETS = ("QueryApiKeyAsd1", "QueryKeyFgh2", "QueryTokenJkl3")
PROVIDER_KEY = "ProviderKeyZxc4"


class EnvelopeTransport(sentry_sdk.Transport):
    """Keeps every envelope the SDK would send, serialized as it would go on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[bytes] = []
        self.item_types: list[str] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.wire.append(envelope.serialize())
        self.item_types += [str(item.type) for item in envelope.items]

    def log_bodies(self) -> list[str]:
        """The messages of the Sentry logs sent, parsed back from the wire."""
        bodies = []
        for raw in self.wire:
            for item in Envelope.deserialize(raw).items:
                if item.type == "log":
                    bodies += [log["body"] for log in json.loads(item.payload.get_bytes())["items"]]
        return bodies


def _shop(transport: EnvelopeTransport, registry: CollectorRegistry) -> Flask:
    """A shop backend: Redis-shared windows (password in the URL), a database check, a view
    that talks to a payment provider and a message broker, and Sentry with logs on."""
    app = Flask("shop")
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        APPMETRICS_AUTH_TOKEN=TOKEN,
        APPMETRICS_REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        APPMETRICS_SENTRY_DSN=DSN,
        APPMETRICS_SENTRY_OPTIONS={"transport": transport, "enable_logs": True},
    )
    metrics = FlaskMetrics(registry=registry)
    log = logging.getLogger("shop")

    @metrics.health_check("database", critical=False)
    def database() -> bool:
        raise ConnectionError(
            f"could not connect to postgresql://app:{DB_PASSWORD}@db.internal:5432/shop"
        )

    metrics.init_app(app)

    @app.get("/checkout")
    def checkout() -> str:
        redis_url = current_app.config["APPMETRICS_REDIS_URL"]  # a frame variable
        broker = f"amqp://shop:{AMQP_PASSWORD}@mq.internal:5672/orders"
        detail = f"AUTH {REDIS_PASSWORD} rejected by {redis_url.split('@')[-1]}"
        log.info("calling https://pay.example.com/v1/charge?key=%s&currency=eur", PROVIDER_KEY)
        log.warning("cache said: %s", detail)
        raise RuntimeError(f"broker {broker} refused the order (query {request.query_string!r})")

    return app


def test_no_secret_reaches_sentry_in_events_breadcrumbs_or_logs(
    registry: CollectorRegistry,
) -> None:
    transport = EnvelopeTransport()
    app = _shop(transport, registry)
    client = app.test_client()
    paths = [
        f"/checkout?api_key={QUERY_SECRETS[0]}&page=2",
        f"/checkout?key={QUERY_SECRETS[1]}",
        f"/checkout?page=3&token={QUERY_SECRETS[2]}",
    ]
    for path in paths:
        response = client.get(path)
        response.close()
        assert response.status_code == 500
    response = client.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    response.close()
    assert response.get_json()["checks"]["database"]["status"] == "fail"
    client_ = sentry_sdk.get_client()
    client_.flush(timeout=5)

    wire = b"\n".join(transport.wire)
    # Events with breadcrumbs, and log items, were all sent: the scrubbing was tested on them.
    assert transport.item_types.count("event") == 3
    assert "log" in transport.item_types
    assert b'"breadcrumbs"' in wire
    assert b"could not connect to postgresql://" in wire  # the check's log line itself went
    secrets = (TOKEN, REDIS_PASSWORD, DB_PASSWORD, AMQP_PASSWORD, SECRET_KEY, PROVIDER_KEY,
               *QUERY_SECRETS)  # fmt: skip
    for secret in secrets:
        for form in (secret, quote(secret, safe="")):
            assert form.encode() not in wire, secret
    # What is not secret survives, so the reports stay useful.
    assert b"page=2" in wire
    assert b"currency=eur" in wire
    assert b"db.internal:5432/shop" in wire
    assert b"mq.internal:5672/orders" in wire


def test_sentrys_own_event_scrubber_is_used_with_our_field_names(
    app_factory: AppFactory, transport: CapturingTransport
) -> None:
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    app_factory(_config(transport, APPMETRICS_SENTRY_SCRUB_FIELDS=["X-Tenant"]))
    scrubber = sentry_sdk.get_client().options["event_scrubber"]
    assert isinstance(scrubber, EventScrubber)
    assert scrubber.recursive
    assert set(DEFAULT_DENYLIST) - {"PHPSESSID", "XSRF-TOKEN"} <= set(scrubber.denylist)
    assert {"x_tenant", "x-tenant", "x-api-key", "prompt", "gemini_api_key"} - set(
        scrubber.denylist
    ) == {"gemini_api_key"}  # fragments are ours to match: the value pass handles them


def test_the_apps_own_log_and_breadcrumb_hooks_run_first(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    transport = EnvelopeTransport()
    seen: list[str] = []

    def before_send_log(log: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(log["body"])
        return None if "drop me" in log["body"] else log

    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        crumb["message"] = f"{crumb.get('message')} token={TOKEN}"  # the app's hook leaks
        return crumb

    options = {"transport": transport, "enable_logs": True, "before_send_log": before_send_log,
               "before_breadcrumb": before_breadcrumb}  # fmt: skip
    app = app_factory(_config(transport, APPMETRICS_SENTRY_OPTIONS=options))
    log = logging.getLogger("shop")

    @app.get("/logs")
    def logs() -> str:
        log.warning("drop me")
        log.warning("keep me, password=%s", DB_PASSWORD)
        raise RuntimeError("after logging")

    app.test_client().get("/logs").close()
    sentry_sdk.get_client().flush(timeout=5)
    wire = b"\n".join(transport.wire)
    assert "drop me" in seen
    bodies = transport.log_bodies()
    assert "drop me" not in bodies  # the app's hook dropped it
    assert f"keep me, password={FILTERED}" in bodies
    assert DB_PASSWORD.encode() not in wire  # nor in the log's message parameters
    assert TOKEN.encode() not in wire
    assert f"token={FILTERED}".encode() in wire


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter2secret@cache:6379/0", f"redis://{FILTERED}@cache:6379/0"),
        ("rediss://default:hunter2secret@cache:6380", f"rediss://{FILTERED}@cache:6380"),
        ("postgresql://app:PASSWORD@db/shop", f"postgresql://{FILTERED}@db/shop"),
        ("amqp://u:p@mq/vhost", f"amqp://{FILTERED}@mq/vhost"),
        ("api_key=abc123&page=2", f"api_key={FILTERED}&page=2"),
        ("GET /x?key=abc123", f"GET /x?key={FILTERED}"),
        ("/x?page=1&token=abc123#top", f"/x?page=1&token={FILTERED}#top"),
        ("host=db password=abc123 dbname=shop", f"host=db password={FILTERED} dbname=shop"),
        ("{'password': 'abc123', 'user': 'app'}", f"{{'password': '{FILTERED}', 'user': 'app'}}"),
        ('{"client_secret": "abc123"}', f'{{"client_secret": "{FILTERED}"}}'),
        ("ghp_" + "a" * 36, FILTERED),
        ("id AKIA" + "A" * 16 + " used", f"id {FILTERED} used"),
        ("sk_live_" + "b" * 24, FILTERED),
        ("xoxb-1234567890-abcdef", FILTERED),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", f"jwt {FILTERED}"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: Bearer {FILTERED}"),
        ("monkey=1 total_tokens=42 page=2", "monkey=1 total_tokens=42 page=2"),
        ("mail bob@example.com at https://example.com/a", "mail bob@example.com at https://example.com/a"),
    ],
)  # fmt: skip
def test_the_value_pass(text: str, expected: str) -> None:
    assert Scrubber().text(text) == expected


def test_the_redis_password_and_secret_key_are_literal_secrets(
    app_factory: AppFactory, transport: CapturingTransport
) -> None:
    from flask_appmetrics.integrations.sentry import app_secrets

    app = app_factory(
        _config(
            transport,
            SECRET_KEY=SECRET_KEY,
            APPMETRICS_REDIS_URL=f"redis://:{quote('p@ss/' + REDIS_PASSWORD, safe='')}@h:1/0",
        )
    )
    state = FlaskMetrics.state(app)
    assert state is not None
    found = app_secrets(state.settings, app.config["SECRET_KEY"])
    scrub = Scrubber(secrets=found)
    assert REDIS_PASSWORD not in scrub.text(f"AUTH p@ss/{REDIS_PASSWORD} failed")
    assert SECRET_KEY not in scrub.text(f"signing with {SECRET_KEY}")


@pytest.mark.parametrize("hostile", ["a." * 50_000, "x://" * 25_000, "'a'" * 30_000 + ":"])
def test_the_value_pass_takes_linear_time_on_hostile_strings(hostile: str) -> None:
    # In a child process: a regex with quadratic backtracking holds the GIL for minutes.
    script = (
        "import sys, time\n"
        "from flask_appmetrics.integrations.sentry import Scrubber\n"
        "text = sys.stdin.read()\n"
        "start = time.perf_counter()\n"
        "Scrubber(secrets=['hunter2hunter2']).text(text)\n"
        "print(time.perf_counter() - start)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=hostile,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert float(done.stdout) < 2.0  # about 0.1 s for 100 kB here
