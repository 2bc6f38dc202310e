"""The /metrics page: prometheus_client's own encoders, gzip, name[] filtering, paths."""

from __future__ import annotations

import gzip

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from tests.support.apps import AppFactory

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_default_format_is_prometheus_text(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == choose_encoder("")[1]
    assert response.headers["Cache-Control"] == "no-store"
    assert "Accept" in response.headers["Vary"]


def test_the_original_services_expected_samples_are_on_the_page(client: FlaskClient) -> None:
    client.get("/metrics")
    found = samples(client.get("/metrics").get_data(as_text=True))
    scrape = (("endpoint", "/metrics"), ("method", "GET"), ("status", "200"))
    assert found[("http_requests_total", scrape)] == 1.0
    for result in ("hit", "miss"):
        key = ("cache_operations_total", (("operation", "get"), ("result", result)))
        assert found[key] == 0.0
    assert ("cache_hit_rate", ()) not in found  # absent until the first cache get
    for quota in ("quota_requests_current_minute", "quota_rpm_remaining", "quota_tokens_today"):
        assert ("" + quota, ()) in found


def test_openmetrics_is_served_when_asked(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.headers["Content-Type"] == choose_encoder(OPENMETRICS)[1]
    body = response.get_data(as_text=True)
    assert body.endswith("# EOF\n")
    names = {family.name for family in parse_om(body)}
    assert {"http_requests", "cache_operations", "cache_hit_rate"} <= names


def test_gzip_when_asked(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(response.data).decode()
    assert "cache_operations_total" in {s[0] for s in samples(body)}
    plain = client.get("/metrics")
    assert "Content-Encoding" not in plain.headers


def test_name_filtering(client: FlaskClient) -> None:
    client.get("/items/1")
    response = client.get("/metrics?name[]=quota_requests_today&name[]=http_requests_total")
    names = {name for name, _ in samples(response.get_data(as_text=True))}
    assert names == {"quota_requests_today", "http_requests_total"}


def test_user_metrics_on_the_same_registry_show_up(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    from prometheus_client import Counter

    orders = Counter("orders_total", "Orders placed", registry=registry)
    orders.inc(3)
    app = app_factory()
    found = samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert found[("orders_total", ())] == 3.0


def test_path_is_configurable_and_none_turns_it_off(app_factory: AppFactory) -> None:
    moved = app_factory({"APPMETRICS_METRICS_PATH": "/internal/prom"}).test_client()
    assert moved.get("/internal/prom").status_code == 200
    assert moved.get("/metrics").status_code == 404
    off: Flask = app_factory({"APPMETRICS_METRICS_PATH": None})
    assert off.test_client().get("/metrics").status_code == 404
    assert not [r for r in off.url_map.iter_rules() if r.endpoint.startswith("appmetrics_metrics")]


def test_only_get_is_served(client: FlaskClient) -> None:
    assert client.post("/metrics").status_code == 405
