"""Host apps sharing one real redis-server: replicas of one service share their health
window, another service on the same Redis keeps its own."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tests.support.hosts import assistant, shop
from tests.support.redis_server import RedisServer
from tests.support.wsgi import serve


@pytest.mark.slow
def test_two_services_on_one_redis_keep_their_own_health(redis_server: RedisServer) -> None:
    config = {"APPMETRICS_REDIS_URL": redis_server.url, "APPMETRICS_REDIS_FLUSH_SECONDS": 0.0}
    # Two replicas of the shop (one service) and the assistant (another), default prefix.
    shop_a = shop.create_app(config, registry=CollectorRegistry())
    shop_b = shop.create_app(config, registry=CollectorRegistry())
    other = assistant.create_app(config, registry=CollectorRegistry())
    for _ in range(60):
        assert serve(shop_a, "/products/broken").status == 500
    assert serve(other, "/api/summarise?text=x").status == 200
    # Replicas of one service share their window...
    replica = serve(shop_b, "/api/health")
    assert replica.status == 503
    assert replica.json()["recent_errors_5min"] == 60
    # ...another service on the same Redis does not see the shop's errors.
    health = serve(other, "/api/health")
    assert health.status == 200, health.body
    assert health.json()["recent_errors_5min"] == 0
    assert health.json()["status"] == "healthy"
