"""Signals: documented, a no-op without the extension, recorded into the sender's registry
only, and still connected after garbage collection (strong references)."""

from __future__ import annotations

import gc
import inspect
import logging
import weakref

import pytest
from blinker import NamedSignal
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics, record_cache_event, signals
from flask_appmetrics.config import load_settings
from flask_appmetrics.errors import StrictInputError
from flask_appmetrics.metrics.registry_state import registry_state
from flask_appmetrics.recording.receivers import install
from tests.support.apps import AppFactory

ALL_SIGNALS = [value for value in vars(signals).values() if isinstance(value, NamedSignal)]


def hits(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(
        "cache_operations_total", {"operation": "get", "result": "hit"}
    )


def test_every_signal_is_documented_with_a_payload_comment() -> None:
    source = inspect.getsource(signals).splitlines()
    assert len(ALL_SIGNALS) >= 6
    for signal in ALL_SIGNALS:
        line = next(i for i, text in enumerate(source) if f'signal("{signal.name}")' in text)
        # This signal's own comment: the ``#:`` lines right above it, up to the first line
        # that is not one (the blank line after the previous signal).
        start = line
        while start > 0 and source[start - 1].startswith("#:"):
            start -= 1
        comment = " ".join(text.removeprefix("#:").strip() for text in source[start:line])
        assert comment, signal.name
        assert "sender: the flask app" in comment.lower(), (signal.name, comment)


def test_sending_without_the_extension_is_a_no_op(registry: CollectorRegistry) -> None:
    bare = Flask("bare")
    for signal in ALL_SIGNALS:
        assert signal.send(bare, hit=True) == [] or signal is signals.app_initialized


def test_events_go_to_the_sending_apps_registry_only() -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first, second = Flask("first"), Flask("second")
    FlaskMetrics(first, registry=first_registry)
    FlaskMetrics(second, registry=second_registry)

    signals.cache_event.send(first, hit=True)
    signals.cache_event.send(first, hit=True)
    signals.cache_event.send(second, hit=True)

    assert hits(first_registry) == 2.0
    assert hits(second_registry) == 1.0


def test_receivers_survive_garbage_collection(app: Flask, registry: CollectorRegistry) -> None:
    gc.collect()
    signals.cache_event.send(app, hit=False)
    assert (
        registry.get_sample_value("cache_operations_total", {"operation": "get", "result": "miss"})
        == 1.0
    )


def test_receivers_do_not_keep_their_app_alive(metrics: FlaskMetrics) -> None:
    # The receivers alone (as init_app installs them), on an app nothing else references:
    # blinker holds them strongly, they hold the app weakly, so the app can be collected
    # and blinker then disconnects them.
    app = Flask("short_lived")
    settings = load_settings(app.config)
    state = registry_state(metrics.registry)
    state.metric_set_for(settings.http.buckets, settings.shared)
    series = state.shared_series(app, settings.shared, None)
    gc.collect()
    before = len(signals.gemini_call.receivers)
    receivers = install(app, series, settings.shared, strict=False)
    assert len(signals.gemini_call.receivers) == before + 1
    app_ref = weakref.ref(app)
    del app
    gc.collect()
    assert app_ref() is None
    assert receivers.app is None
    assert len(signals.gemini_call.receivers) == before


def test_user_receivers_see_helper_events(app: Flask) -> None:
    seen: list[dict[str, object]] = []

    def receiver(sender: Flask, **payload: object) -> None:
        seen.append({"sender": sender, **payload})

    with signals.cache_event.connected_to(receiver, sender=app), app.app_context():
        record_cache_event(hit=False, operation="get", layer="memory")
    assert seen == [{"sender": app, "hit": False, "operation": "get", "layer": "memory"}]


def test_bad_signal_payload_is_logged_and_not_recorded(
    app: Flask, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_appmetrics"):
        signals.cache_event.send(app, hit="yes")
        signals.cache_event.send(app, hit=True, colour="red")
    assert hits(registry) == 0.0
    assert "hit: expected True or False" in caplog.text
    assert "colour: unknown keyword" in caplog.text


def test_strict_mode_raises_to_the_sender(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_STRICT": True})
    with pytest.raises(TypeError, match="hit"):
        signals.cache_event.send(app, hit=1)
    with pytest.raises(ValueError, match="status"):
        signals.gemini_call.send(app, endpoint="/x", model="m", status="ok")
    assert hits(registry) == 0.0
    assert (
        registry.get_sample_value(
            "gemini_api_calls_total", {"endpoint": "/x", "model": "m", "status": "ok"}
        )
        is None
    )


def test_strict_mode_contains_the_apps_own_receivers_and_raises_ours(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    """Under APPMETRICS_STRICT only the extension's refusal reaches the caller: an app
    receiver raising ValueError or TypeError (the same classes) is still contained."""
    app = app_factory({"APPMETRICS_STRICT": True})
    ran: list[str] = []

    def audit(sender: Flask, **payload: object) -> None:
        ran.append("audit")
        raise ValueError("the app's own receiver is broken")

    def typed(sender: Flask, **payload: object) -> None:
        ran.append("typed")
        raise TypeError("so is this one")

    signals.cache_event.connect(audit, sender=app, weak=False)
    signals.cache_event.connect(typed, sender=app, weak=False)
    try:
        with app.app_context():
            record_cache_event(hit=True)  # good input: the app's errors stay with the app
            with pytest.raises(TypeError, match=r"^hit:") as refused:
                record_cache_event(hit="yes")  # type: ignore[arg-type]
    finally:
        signals.cache_event.disconnect(audit)
        signals.cache_event.disconnect(typed)
    assert isinstance(refused.value, StrictInputError)
    # Every receiver ran both times (blinker keeps receivers in no particular order).
    assert sorted(ran) == ["audit", "audit", "typed", "typed"]
    assert hits(registry) == 1.0
    assert (
        registry.get_sample_value(
            "flask_appmetrics_internal_errors_total", {"component": "signal_receiver"}
        )
        == 4.0
    )
