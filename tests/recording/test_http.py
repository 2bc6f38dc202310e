"""HTTP instrumentation: labels, statuses, errors, streaming, bounded cardinality."""

from __future__ import annotations

import logging
import random
import string
import time
from collections.abc import Iterator

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.apps import AppFactory

UNMATCHED = "<unmatched>"


def requests(registry: CollectorRegistry, method: str, endpoint: str, status: str) -> float:
    labels = {"method": method, "endpoint": endpoint, "status": status}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def in_progress(registry: CollectorRegistry, method: str, endpoint: str) -> float | None:
    return registry.get_sample_value(
        "http_requests_in_progress", {"method": method, "endpoint": endpoint}
    )


def duration_count(registry: CollectorRegistry, method: str, endpoint: str) -> float:
    labels = {"method": method, "endpoint": endpoint}
    return registry.get_sample_value("http_request_duration_seconds_count", labels) or 0.0


def series_count(registry: CollectorRegistry) -> int:
    return sum(len(m.samples) for m in registry.collect())


def test_endpoint_label_is_the_url_rule_template(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    for item in (1, 2, 3):
        assert client.get(f"/items/{item}").status_code == 200
    assert requests(registry, "GET", "/items/<int:item_id>", "200") == 3.0
    assert duration_count(registry, "GET", "/items/<int:item_id>") == 3.0
    assert in_progress(registry, "GET", "/items/<int:item_id>") == 0.0


def test_methods_and_statuses_are_labelled(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    client.post("/echo")
    client.put("/echo")
    client.get("/forbidden")
    assert requests(registry, "POST", "/echo", "200") == 1.0
    assert requests(registry, "PUT", "/echo", "200") == 1.0
    assert requests(registry, "GET", "/forbidden", "403") == 1.0
    # An HTTP error the view chose is not an application error.
    assert (
        registry.get_sample_value(
            "application_errors_total", {"endpoint": "/forbidden", "error_type": "Forbidden"}
        )
        is None
    )


def test_unmatched_urls_and_odd_methods_share_one_series_each(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    client.get("/no/such/page")
    client.open("/no/such/page", method="BREW")
    client.open("/echo", method="BREW")
    client.get("/metrics")  # create the scrape's own series before measuring
    before = series_count(registry)
    rng = random.Random(42)
    for _ in range(10_000):
        # Starts with a letter: "//x" would be read by the test client as a host name.
        tail = "".join(rng.choices(string.ascii_letters + "/.-_~", k=rng.randint(0, 40)))
        path = "/" + rng.choice(string.ascii_letters) + tail
        method = rng.choice(["GET", "BREW", "PROPFIND", "X" + str(rng.randint(0, 10**6))])
        client.open(path, method=method)
    assert series_count(registry) == before
    total_unmatched = sum(
        requests(registry, method, UNMATCHED, status)
        for method in ("GET", "_OTHER")
        for status in ("404", "405", "308")
    )
    assert total_unmatched == 10_003  # every one of them counted, in a bounded set of series
    # A method the rule does not allow fails routing too (405): it has no rule template.
    assert requests(registry, "_OTHER", UNMATCHED, "405") == 1.0


def test_a_view_that_raises_is_a_500_and_an_application_error(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert requests(registry, "GET", "/boom", "500") == 1.0
    assert in_progress(registry, "GET", "/boom") == 0.0
    errors = {"endpoint": "/boom", "error_type": "RuntimeError"}
    assert registry.get_sample_value("application_errors_total", errors) == 1.0


def test_a_500_is_recorded_when_testing_reraises(app: Flask, registry: CollectorRegistry) -> None:
    app.config["TESTING"] = True
    with pytest.raises(RuntimeError, match="view failed"):
        app.test_client().get("/boom")
    assert requests(registry, "GET", "/boom", "500") == 1.0
    assert duration_count(registry, "GET", "/boom") == 1.0
    assert in_progress(registry, "GET", "/boom") == 0.0
    errors = {"endpoint": "/boom", "error_type": "RuntimeError"}
    assert registry.get_sample_value("application_errors_total", errors) == 1.0


def test_error_type_label_is_bounded(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory({"APPMETRICS_MAX_ERROR_TYPES": 3})

    @app.get("/raise/<int:n>")
    def raise_n(n: int) -> str:
        raise type(f"Error{n}", (Exception,), {})()

    client = app.test_client()
    for n in range(20):
        assert client.get(f"/raise/{n}").status_code == 500
    samples = [
        s
        for m in registry.collect()
        if m.name == "application_errors"
        for s in m.samples
        if s.name == "application_errors_total"
    ]
    assert len(samples) == 4  # three kept, everything else is "other"
    other = {"endpoint": "/raise/<int:n>", "error_type": "other"}
    assert registry.get_sample_value("application_errors_total", other) == 17.0


def test_a_streamed_response_is_timed_to_the_end_of_its_body(
    app: Flask, registry: CollectorRegistry
) -> None:
    pause = 0.05

    @app.get("/slow-stream")
    def slow_stream() -> Response:
        def body() -> Iterator[str]:
            yield "first"
            time.sleep(pause)
            yield "last"

        return Response(body())

    response = app.test_client().get("/slow-stream")
    # The body has not been sent yet: the request is still in progress, not yet counted.
    assert in_progress(registry, "GET", "/slow-stream") == 1.0
    assert requests(registry, "GET", "/slow-stream", "200") == 0.0
    assert response.get_data(as_text=True) == "firstlast"
    response.close()  # what the WSGI server does after the last chunk
    assert in_progress(registry, "GET", "/slow-stream") == 0.0
    assert requests(registry, "GET", "/slow-stream", "200") == 1.0
    total = registry.get_sample_value(
        "http_request_duration_seconds_sum", {"method": "GET", "endpoint": "/slow-stream"}
    )
    assert total is not None
    assert total >= pause


def test_stream_with_context_is_counted_once(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    response = client.get("/stream")
    assert response.get_data(as_text=True) == "ab"
    response.close()
    assert requests(registry, "GET", "/stream", "200") == 1.0
    assert in_progress(registry, "GET", "/stream") == 0.0


def test_metrics_scrapes_are_counted_by_default(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    client.get("/metrics")
    client.get("/metrics")
    assert requests(registry, "GET", "/metrics", "200") == 2.0


def test_excluded_paths_are_not_recorded(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory({"APPMETRICS_EXCLUDE_PATHS": ["/metrics", "/items/"]})
    client = app.test_client()
    client.get("/metrics")
    client.get("/items/1")
    client.post("/echo")
    assert requests(registry, "GET", "/metrics", "200") == 0.0
    assert requests(registry, "GET", "/items/<int:item_id>", "200") == 0.0
    assert requests(registry, "POST", "/echo", "200") == 1.0


def test_excluded_paths_match_whole_segments(registry: CollectorRegistry) -> None:
    app = Flask("segments")
    app.config["APPMETRICS_EXCLUDE_PATHS"] = ["/internal"]
    for rule in ("/internal", "/internal/jobs", "/internalize"):
        app.add_url_rule(rule, rule, lambda: "ok")
    FlaskMetrics(app, registry=registry)
    client = app.test_client()
    for path in ("/internal", "/internal/jobs", "/internalize"):
        assert client.get(path).status_code == 200
    assert requests(registry, "GET", "/internal", "200") == 0.0
    assert requests(registry, "GET", "/internal/jobs", "200") == 0.0
    assert requests(registry, "GET", "/internalize", "200") == 1.0


def test_buckets_are_configurable(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory({"APPMETRICS_BUCKETS": [0.1, 1, 10]})
    app.test_client().get("/items/1")
    labels = {"method": "GET", "endpoint": "/items/<int:item_id>"}
    buckets = {
        s.labels["le"]
        for m in registry.collect()
        if m.name == "http_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["endpoint"] == labels["endpoint"]
    }
    assert buckets == {"0.1", "1.0", "10.0", "+Inf"}


def test_an_early_returning_hook_of_another_extension_is_still_measured(
    app: Flask, registry: CollectorRegistry
) -> None:
    @app.before_request
    def deny() -> tuple[str, int]:
        return "rate limited", 429

    app.test_client().get("/items/1")
    assert requests(registry, "GET", "/items/<int:item_id>", "429") == 1.0
    assert in_progress(registry, "GET", "/items/<int:item_id>") == 0.0


def test_one_app_per_test_default_registry_head_and_options(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    client.head("/items/1")
    client.options("/echo")
    assert requests(registry, "HEAD", "/items/<int:item_id>", "200") == 1.0
    assert requests(registry, "OPTIONS", "/echo", "200") == 1.0


def test_the_response_recorded_is_the_one_the_client_gets(registry: CollectorRegistry) -> None:
    # Flask runs after_request hooks in reverse order of registration: one registered
    # before init_app would run after ours, had ours not been moved to run last.
    app = Flask("hooks_first")
    app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: {"id": item_id})

    @app.after_request
    def teapot(response: Response) -> Response:
        response.status_code = 418
        return response

    FlaskMetrics(app, registry=registry)
    assert app.test_client().get("/items/1").status_code == 418
    assert requests(registry, "GET", "/items/<int:item_id>", "418") == 1.0
    assert requests(registry, "GET", "/items/<int:item_id>", "200") == 0.0


def test_a_failing_after_request_hook_still_ends_the_request(registry: CollectorRegistry) -> None:
    # The hook fails in the normal pass and again in the error page's pass: Flask logs the
    # second failure and sends the 500 without running the rest of the hooks, ours included.
    app = Flask("failing_hook")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: {"id": item_id})

    @app.after_request
    def broken(response: Response) -> Response:
        raise RuntimeError("after_request failed")

    FlaskMetrics(app, registry=registry)
    logging.getLogger("failing_hook").disabled = True
    try:
        assert app.test_client().get("/items/1").status_code == 500
    finally:
        logging.getLogger("failing_hook").disabled = False
    assert requests(registry, "GET", "/items/<int:item_id>", "500") == 1.0
    assert in_progress(registry, "GET", "/items/<int:item_id>") == 0.0
