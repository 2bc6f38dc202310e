"""``async def`` views (Flask's async support, extra ``async``) are measured like sync ones."""

from __future__ import annotations

import asyncio

import pytest
from flask import Flask, abort
from prometheus_client import CollectorRegistry

from tests.support.apps import AppFactory

pytest.importorskip("asgiref", reason="Flask async views need the 'async' extra")


def _async_app(app_factory: AppFactory) -> Flask:
    app = app_factory(routes=False)

    @app.get("/async/items/<int:item_id>")
    async def item(item_id: int) -> dict[str, int]:
        await asyncio.sleep(0)
        results = await asyncio.gather(*(asyncio.sleep(0, result=i) for i in range(3)))
        return {"id": item_id, "sum": sum(results)}

    @app.get("/async/boom")
    async def boom() -> str:
        await asyncio.sleep(0)
        raise KeyError("async view failed")

    @app.get("/async/missing")
    async def missing() -> str:
        await asyncio.sleep(0)
        abort(404)

    @app.before_request
    async def async_hook() -> None:
        await asyncio.sleep(0)

    return app


def test_async_views_are_counted_timed_and_balanced(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    client = _async_app(app_factory).test_client()
    for i in range(4):
        response = client.get(f"/async/items/{i}")
        assert response.status_code == 200
        assert response.get_json() == {"id": i, "sum": 3}
    assert client.get("/async/boom").status_code == 500
    assert client.get("/async/missing").status_code == 404

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    items = {"method": "GET", "endpoint": "/async/items/<int:item_id>"}
    assert value("http_requests_total", **items, status="200") == 4
    assert value("http_request_duration_seconds_count", **items) == 4
    assert value("http_requests_in_progress", **items) == 0
    boom = {"method": "GET", "endpoint": "/async/boom"}
    assert value("http_requests_total", **boom, status="500") == 1
    assert value("http_requests_in_progress", **boom) == 0
    assert value("application_errors_total", endpoint="/async/boom", error_type="KeyError") == 1
    missing = {"method": "GET", "endpoint": "/async/missing"}
    assert value("http_requests_total", **missing, status="404") == 1


def test_async_views_match_sync_ones(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = _async_app(app_factory)

    @app.get("/sync/items/<int:item_id>")
    def sync_item(item_id: int) -> dict[str, int]:
        return {"id": item_id, "sum": 3}

    client = app.test_client()
    for prefix in ("/async", "/sync"):
        assert client.get(f"{prefix}/items/1").status_code == 200
        assert client.get(f"{prefix}/items/2").status_code == 200

    def samples(prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for family in registry.collect():
            for s in family.samples:
                if s.labels.get("endpoint") == f"{prefix}/items/<int:item_id>":
                    if s.name.endswith(("_sum", "_created")) or "le" in s.labels:
                        continue  # durations and creation times differ by nature
                    out[
                        f"{s.name}{sorted((k, v) for k, v in s.labels.items() if k != 'endpoint')}"
                    ] = s.value
        return out

    assert samples("/async") == samples("/sync")
    assert samples("/async")
