"""Windows shared through a real redis-server, which also goes away mid-run and comes back.

Two apps with their own registries stand for two workers (or hosts): what one records,
the other's health and quota gauges see.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.health.monitor import HealthMonitor
from flask_appmetrics.health.windows import RecentUsers
from flask_appmetrics.helpers import record_quota_usage
from flask_appmetrics.integrations.redis.link import RedisLink, _flush_at_exit
from flask_appmetrics.integrations.redis.windows import SharedQuota, SharedUserWindow
from flask_appmetrics.llm.quota import InMemoryQuota
from flask_appmetrics.settings import RedisSettings
from tests.support.apps import add_test_routes
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

WAIT_SECONDS = 20.0


def _app(url: str, registry: CollectorRegistry, **config: Any) -> Flask:
    app = Flask("worker")
    settings = {
        "APPMETRICS_REDIS_URL": url,
        "APPMETRICS_REDIS_PREFIX": "test",
        # Write-through, so that one app sees what another just did.
        "APPMETRICS_REDIS_FLUSH_SECONDS": 0.0,
    }
    app.config.update({**settings, **config})
    add_test_routes(app)
    FlaskMetrics(registry=registry).init_app(app)
    return app


def _user(n: int) -> dict[str, str]:
    return {"Authorization": f"Bearer user-{n}"}


def _health(app: Flask) -> dict[str, Any]:
    body: dict[str, Any] = app.test_client().get("/api/health").get_json()
    return body


def test_windows_are_shared_by_every_worker(redis_server: RedisServer) -> None:
    registry_a, registry_b = CollectorRegistry(), CollectorRegistry()
    a, b = _app(redis_server.url, registry_a), _app(redis_server.url, registry_b)
    client_a, client_b = a.test_client(), b.test_client()
    for n in range(3):
        assert client_a.get("/items/1", headers=_user(n)).status_code == 200
    assert client_a.get("/boom", headers=_user(0)).status_code == 500
    for n in range(2, 5):
        assert client_b.get("/items/2", headers=_user(n)).status_code == 200

    for app in (a, b):
        health = _health(app)
        assert health["recent_requests_5min"] == 7
        assert health["recent_errors_5min"] == 1
        assert health["concurrent_users"] == 5  # users 0..4, two seen by both workers
        assert health["checks"]["redis"]["status"] == "pass"

    # The status page's per-slot series comes from Redis too.
    state = FlaskMetrics.state(b)
    assert state is not None
    assert state.health is not None
    slots = state.health.requests.series()  # type: ignore[attr-defined]
    assert sum(slot.requests for slot in slots) == 7
    assert sum(slot.errors for slot in slots) == 1

    with a.app_context():
        record_quota_usage(requests=2, tokens=300)
    with b.app_context():
        record_quota_usage(requests=1, tokens=50)
    for registry in (registry_a, registry_b):
        assert registry.get_sample_value("quota_requests_current_minute") == 3
        assert registry.get_sample_value("quota_tokens_today") == 350
        assert registry.get_sample_value("concurrent_users") == 5

    # Nothing grows: every key expires.
    client = redis_server.client()
    keys = list(client.scan_iter("test:*"))
    assert keys
    for key in keys:
        assert 0 < client.ttl(key) <= 2 * 86_400, key


def test_redis_going_away_mid_run_falls_back_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_appmetrics")
    registry = CollectorRegistry()
    # Retry on every operation, so recovery needs no waiting.
    app = _app(redis_server.url, registry, APPMETRICS_REDIS_RETRY_SECONDS=0.0)
    other = _app(redis_server.url, CollectorRegistry())
    client = app.test_client()
    for _ in range(2):
        assert other.test_client().get("/items/9").status_code == 200
    for n in range(3):
        assert client.get("/items/1", headers=_user(n)).status_code == 200
    assert _health(app)["recent_requests_5min"] == 5  # shared: both apps

    redis_server.kill()
    for n in range(4):
        assert client.get("/items/1", headers=_user(n)).status_code == 200
    health = _health(app)
    # This process's own window, kept up to date all along: its 7 requests only.
    assert health["recent_requests_5min"] == 7
    assert health["concurrent_users"] == 4
    assert health["status"] == "degraded"
    assert health["checks"]["redis"]["status"] == "fail"
    assert any("redis" in reason.lower() for reason in health["reasons"])
    assert registry.get_sample_value(
        "flask_appmetrics_internal_errors_total", {"component": "redis"}
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unavailable" in m and "local windows" in m for m in warnings)
    with app.app_context():
        record_quota_usage(requests=1, tokens=10)  # recorded locally, not lost, not raised
    assert registry.get_sample_value("quota_requests_current_minute") == 1

    redis_server.start()  # same port, empty (no persistence)
    assert client.get("/items/1", headers=_user(7)).status_code == 200
    health = _health(app)
    assert health["checks"]["redis"]["status"] == "pass"
    assert health["status"] == "healthy"
    assert health["recent_requests_5min"] == 1  # shared again, from the fresh server
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_a_hung_redis_costs_one_timeout_then_nothing(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    app = _app(redis_server.url, registry, APPMETRICS_REDIS_RETRY_SECONDS=3600.0)
    state = FlaskMetrics.state(app)
    assert state is not None
    assert state.redis is not None
    link = state.redis
    pool_kwargs = link.client.connection_pool.connection_kwargs
    assert pool_kwargs["socket_timeout"] == pool_kwargs["socket_connect_timeout"] == 0.05
    client = app.test_client()
    assert client.get("/items/1").status_code == 200
    assert link.failures == 0

    redis_server.signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        for _ in range(20):
            assert client.get("/items/1").status_code == 200
        assert _health(app)["status"] == "degraded"
    finally:
        redis_server.signal(signal.SIGCONT)
    # Only the first operation waited for the timeout; the rest went straight to the
    # local windows until the retry time.
    assert link.failures == 1
    assert not link.available


def test_window_updates_are_batched(redis_server: RedisServer) -> None:
    flush = {"APPMETRICS_REDIS_FLUSH_SECONDS": 60.0}
    a = _app(redis_server.url, CollectorRegistry(), **flush)
    b = _app(redis_server.url, CollectorRegistry(), **flush)
    state = FlaskMetrics.state(a)
    assert state is not None
    assert state.redis is not None
    client = a.test_client()
    for n in range(50):
        assert client.get("/items/1", headers=_user(n % 5)).status_code == 200
    # The first update went out at once (the request's user is noted in after_request, its
    # count when the server has the response, so the user goes first); everything else is
    # pending in app a: one round trip for 50 requests.
    assert state.redis.flushes == 1
    first = _health(b)
    assert (first["recent_requests_5min"], first["concurrent_users"]) == (0, 1)
    # Reading its own windows sends a's pending updates first.
    health_a = _health(a)
    assert health_a["recent_requests_5min"] == 50
    assert health_a["concurrent_users"] == 5
    assert state.redis.flushes == 2
    assert _health(b)["recent_requests_5min"] == 50
    assert _health(b)["concurrent_users"] == 5


# -- the windows on their own, with a fixed wall clock --------------------------------------


def _link(server: RedisServer, prefix: str) -> RedisLink:
    settings = RedisSettings(server.url, prefix, socket_timeout=1.0, retry_seconds=0.0)
    return RedisLink(settings)


def test_quota_increments_are_atomic_across_processes(redis_server: RedisServer) -> None:
    now = 1_700_000_000.0

    def quota() -> SharedQuota:
        return SharedQuota(_link(redis_server, "atomic"), InMemoryQuota(), "UTC", clock=lambda: now)

    workers = [quota() for _ in range(4)]
    seen: list[int] = []
    lock = threading.Lock()

    def work(q: SharedQuota) -> None:
        for _ in range(50):
            usage = q.add(1, 10)
            with lock:
                seen.append(usage.requests_minute)

    threads = [threading.Thread(target=work, args=(q,)) for q in workers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_SECONDS)
    # Each add saw its own total: a MULTI transaction, no lost or shared increments.
    assert sorted(seen) == list(range(1, 401))
    usage = workers[0].usage()
    assert (usage.requests_minute, usage.tokens_minute) == (400, 4000)
    assert (usage.requests_today, usage.tokens_today) == (400, 4000)


def test_shared_users_expire_by_age_and_are_capped(redis_server: RedisServer) -> None:
    clock = [1_700_000_000.0]
    users = SharedUserWindow(
        _link(redis_server, "users"),
        RecentUsers(60.0, max_tracked=3),
        clock=lambda: clock[0],
    )
    for name in ("a", "b"):
        users.touch(name)
    assert users.count() == 2
    clock[0] += 61
    users.touch("c")
    assert users.count() == 1
    for name in ("d", "e", "f", "g"):
        users.touch(name)
    assert users.count() == 3
    client = redis_server.client()
    assert client.zcard("users:users") == 3
    members = client.zrange("users:users", 0, -1)
    # Stored as digests, never as sent.
    assert all(len(m) == 24 and int(m, 16) >= 0 for m in members)
    key = users.hash_key()
    assert key is not None
    expected = {users._member(users._digest(n), key) for n in "cdefg"}
    assert set(members) <= expected  # same score: ties by member
    assert 0 < client.ttl("users:users") <= 61


def test_app_starts_while_redis_is_down(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    app = _app(url, CollectorRegistry())
    assert app.test_client().get("/items/1").status_code == 200
    assert _health(app)["recent_requests_5min"] == 1


# -- one shared users set counts once, however many apps read it ----------------------------


def test_apps_sharing_a_users_set_count_each_user_once(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    apps = [_app(redis_server.url, registry) for _ in range(3)]
    other_prefix = _app(redis_server.url, registry, APPMETRICS_REDIS_PREFIX="other")
    for n, app in enumerate(apps):
        app.test_client().get("/items/1", headers=_user(n))
        app.test_client().get("/items/1", headers=_user(n + 1))
    other_prefix.test_client().get("/items/1", headers=_user(0))
    assert _health(apps[0])["concurrent_users"] == 4  # users 0..3 in the shared set
    # The three apps read one set: 4 users, plus 1 in the other prefix's set; not 3 x 4 + 1.
    assert registry.get_sample_value("concurrent_users") == 5.0


def test_the_redis_check_is_per_app(redis_server: RedisServer, tmp_path: Path) -> None:
    from flask_appmetrics.health.checks import CheckRegistry
    from flask_appmetrics.health_wiring import build_monitor

    def monitor(url: str) -> HealthMonitor:
        app = _app(url, CollectorRegistry())
        state = FlaskMetrics.state(app)
        assert state is not None
        return build_monitor(
            app, state.settings.health, state.metric_set, CheckRegistry(), redis=state.redis
        )

    up, down = monitor(redis_server.url), monitor(f"redis://127.0.0.1:{free_port()}/0")
    assert [(r.name, r.passed, r.critical) for r in up.run_checks()] == [("redis", True, False)]
    [result] = down.run_checks()
    assert (result.name, result.passed, result.critical) == ("redis", False, False)
    assert down.evaluate().status == "degraded"


def test_building_apps_adds_no_exit_hook_each(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    _app(url, CollectorRegistry())  # whatever is registered once per process
    before = atexit._ncallbacks()  # type: ignore[attr-defined]
    apps = [_app(url, CollectorRegistry()) for _ in range(20)]
    assert atexit._ncallbacks() == before  # type: ignore[attr-defined]
    assert all(FlaskMetrics.state(app) is not None for app in apps)


def test_pending_updates_are_sent_at_exit(redis_server: RedisServer) -> None:
    app = _app(redis_server.url, CollectorRegistry(), APPMETRICS_REDIS_FLUSH_SECONDS=60.0)
    client = app.test_client()
    client.get("/items/1")  # the first request flushes (nothing sent before it)
    client.get("/items/1")
    client.get("/items/1")
    keys = redis_server.client().keys("test:health:requests:*")
    sent = sum(int(redis_server.client().hget(k, "requests") or 0) for k in keys)
    assert sent < 3
    _flush_at_exit()
    keys = redis_server.client().keys("test:health:requests:*")
    sent = sum(int(redis_server.client().hget(k, "requests") or 0) for k in keys)
    assert sent == 3


# -- one Redis, several services: the default prefix carries the app's name ------------------


def _service(name: str, url: str, **config: Any) -> Flask:
    """A service as deployed: its own app name, default prefix, a route that can fail."""
    app = Flask(name)
    app.config.update(
        {"APPMETRICS_REDIS_URL": url, "APPMETRICS_REDIS_FLUSH_SECONDS": 0.0, **config}
    )

    @app.get("/work")
    def work() -> str:
        return "done"

    @app.get("/charge")
    def charge() -> str:
        raise RuntimeError("payment provider down")

    FlaskMetrics(registry=CollectorRegistry()).init_app(app)
    return app


def _get(app: Flask, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = app.test_client().get(path, **kwargs)
    try:
        return response.status_code, response.get_json(silent=True)
    finally:
        response.close()


def test_services_sharing_one_redis_keep_their_own_health(redis_server: RedisServer) -> None:
    billing, search = (_service(n, redis_server.url) for n in ("billing", "search"))
    assert billing.config["APPMETRICS_REDIS_PREFIX"] == "appmetrics:{app_name}"
    for _ in range(30):
        assert _get(billing, "/charge")[0] == 500
    for _ in range(5):
        assert _get(search, "/work")[0] == 200

    status, body = _get(billing, "/api/health")
    assert status == 503
    assert body["recent_errors_5min"] == 30
    status, body = _get(search, "/api/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["recent_errors_5min"] == 0
    assert body["recent_requests_5min"] == 5

    keys = set(redis_server.client().scan_iter("appmetrics:*"))
    assert any(k.startswith("appmetrics:billing:health:") for k in keys), keys
    assert any(k.startswith("appmetrics:search:health:") for k in keys), keys


def test_replicas_of_one_service_share_their_windows(redis_server: RedisServer) -> None:
    one, two = (_service("billing", redis_server.url) for _ in range(2))
    for _ in range(3):
        assert _get(one, "/work", headers=_user(1))[0] == 200
    assert _get(two, "/charge", headers=_user(1))[0] == 500
    assert _get(two, "/work", headers=_user(2))[0] == 200
    for replica in (one, two):
        _, body = _get(replica, "/api/health")
        assert body["recent_requests_5min"] == 5
        assert body["recent_errors_5min"] == 1
        assert body["concurrent_users"] == 2  # user 1 seen by both replicas counts once


def test_an_explicit_prefix_is_used_as_given(redis_server: RedisServer) -> None:
    billing = _service("billing", redis_server.url, APPMETRICS_REDIS_PREFIX="shared")
    search = _service("search", redis_server.url, APPMETRICS_REDIS_PREFIX="shared")
    _get(billing, "/work")
    _get(search, "/work")
    assert _get(search, "/api/health")[1]["recent_requests_5min"] == 2
    assert all(k.startswith("shared:") for k in redis_server.client().scan_iter("*"))


# -- user identities: hashed with a key nobody derives from the public prefix ----------------


def _prefix_derived_member(prefix: str, identity: str) -> str:
    """A digest keyed by the prefix alone: anyone who knows the prefix can compute it."""
    import hashlib

    key = hashlib.blake2b(prefix.encode(), digest_size=32).digest()
    return hashlib.blake2b(identity.encode(), key=key, digest_size=12).hexdigest()


def _members(server: RedisServer, prefix: str) -> set[str]:
    return set(server.client().zrange(f"{prefix}:users", 0, -1))


def test_identities_are_keyed_by_the_apps_secret_key(redis_server: RedisServer) -> None:
    import hashlib
    import hmac

    secret = "billing-secret-key-0123456789"
    replicas = [_service("billing", redis_server.url, SECRET_KEY=secret) for _ in range(2)]
    for replica in replicas:
        assert _get(replica, "/work", headers=_user(7))[0] == 200
    prefix = "appmetrics:billing"
    identity = "auth:Bearer user-7"
    members = _members(redis_server, prefix)
    assert len(members) == 1  # the replicas agree
    assert _prefix_derived_member(prefix, identity) not in members
    key = hmac.new(
        secret.encode(), b"flask-appmetrics users\0" + prefix.encode(), hashlib.sha256
    ).digest()
    digest = hashlib.blake2b(identity.encode(), digest_size=32).digest()
    assert members == {hashlib.blake2b(digest, key=key, digest_size=12).hexdigest()}
    # Nothing secret is kept in Redis.
    assert not redis_server.client().exists(f"{prefix}:users:hash-key")
    # Another SECRET_KEY (another deployment) gives unrelated digests.
    other = _service("billing", redis_server.url, SECRET_KEY="x" * 32)
    redis_server.client().delete(f"{prefix}:users")
    _get(other, "/work", headers=_user(7))
    assert _members(redis_server, prefix).isdisjoint(members)


def test_without_a_secret_key_replicas_agree_on_a_random_key_kept_in_redis(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_appmetrics")
    replicas = [_service("billing", redis_server.url) for _ in range(3)]
    assert any("no SECRET_KEY" in r.getMessage() for r in caplog.records)
    for n, replica in enumerate(replicas):
        assert _get(replica, "/work", headers=_user(7))[0] == 200
        assert _get(replica, "/work", headers=_user(n))[0] == 200
    prefix = "appmetrics:billing"
    members = _members(redis_server, prefix)
    assert len(members) == 4  # users 0, 1, 2, and 7 once although every replica saw 7
    assert _prefix_derived_member(prefix, "auth:Bearer user-7") not in members
    client = redis_server.client()
    stored = client.get(f"{prefix}:users:hash-key")
    assert stored is not None
    assert len(stored) == 64  # 32 random bytes, hex
    assert 0 < client.ttl(f"{prefix}:users:hash-key") <= 86_400
    for replica in replicas:
        assert _get(replica, "/api/health")[1]["concurrent_users"] == 4


def test_a_generic_app_name_in_the_prefix_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing is sent at start
    caplog.set_level(logging.WARNING, logger="flask_appmetrics")
    _service("app", url, SECRET_KEY="s" * 32)
    assert any("'app'" in r.getMessage() and "APPMETRICS_REDIS_PREFIX" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    caplog.clear()
    _service("billing", url, SECRET_KEY="s" * 32)
    _service("app", url, SECRET_KEY="s" * 32, APPMETRICS_REDIS_PREFIX="appmetrics:billing")
    assert not caplog.records


def test_pending_identities_are_fixed_size_digests() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # down: nothing is sent, everything waits
    settings = RedisSettings(url, "bounded", socket_timeout=0.05, retry_seconds=60.0)
    users = SharedUserWindow(
        RedisLink(dataclasses.replace(settings, flush_seconds=60.0)),
        RecentUsers(300.0, max_tracked=1000),
        secret="s" * 32,
    )
    for n in range(3000):
        users.touch(f"auth:Bearer {n:08d}" + "x" * 8000)  # hostile 8 kB Authorization values
    assert len(users._pending) == 1000  # capped at max_tracked
    assert all(len(digest) == 32 for digest in users._pending)
