"""Health and quota windows shared through Redis by every worker and host.

With ``APPMETRICS_REDIS_URL`` set, three windows live in Redis instead of process memory:

* the health error window (:class:`SharedRequestWindow`, a
  :class:`~flask_appmetrics.health.windows.RequestWindow`): one hash per time bucket, added to
  with ``HINCRBY``;
* concurrent users (:class:`SharedUserWindow`, a
  :class:`~flask_appmetrics.health.windows.UserWindow`):
  one sorted set of keyed hashes of identities, scored by last sighting, trimmed by age and
  size whenever it is written;
* the API quota (:class:`SharedQuota`, a :class:`~flask_appmetrics.llm.quota.QuotaCounter`): one
  hash per minute and per day, incremented in a ``MULTI`` transaction that returns the new
  totals, so limit checks see one consistent snapshot;
* LLM spend today and the quota limits learned from refusals
  (:mod:`flask_appmetrics.integrations.redis.llm`).

The two health windows are written in batches: a request only adds to in-process pending
counts, and at most once per ``APPMETRICS_REDIS_FLUSH_SECONDS`` (default 1 s) a request
sends every pending update in one ``MULTI`` pipeline; reading a window sends this
process's pending updates first. So a worker costs Redis one round trip per second
whatever its request rate, and shared counts lag by at most that interval (an idle
worker's last updates wait for its next request, or its exit). The quota is written on
every call, since a limit check needs the total including it.

Every key has a TTL slightly longer than its window, so nothing grows, and bucket and
quota keys are named by wall-clock time so all hosts agree on them. Keys start with
``APPMETRICS_REDIS_PREFIX``, by default ``appmetrics:{app_name}`` with the Flask app's name
filled in: the replicas of one service (same app name) share their windows, different
services on one Redis do not.

Identities are hashed with a key that is not derived from anything public (the prefix is
not secret): HMAC of the app's ``SECRET_KEY`` when it has one, which replicas share anyway
for their sessions. Without one, a random key is created once per prefix in Redis itself
(``SET NX``, so every replica uses the first one written): replicas agree, nothing
precomputed works across deployments, but whoever can read Redis can read that key too and
test guessed identities (user ids, addresses) against the set; set ``SECRET_KEY`` to stop
that. Each process reads the key again at least hourly, which keeps it alive (it expires a
day after the last reader) and picks up a new one should it have been evicted.

A down or slow Redis never fails or stalls a request: the client has short connect and
read timeouts (``APPMETRICS_REDIS_SOCKET_TIMEOUT_SECONDS``) and no retries, and the first
failure switches :class:`RedisLink` to the local windows (which are always kept up to
date, so they hold this process's recent history) for ``APPMETRICS_REDIS_RETRY_SECONDS``;
then the next operation tries Redis again, and success switches back. Both switches are
logged; while Redis is away the ``redis`` health check fails (non-critical: ``degraded``).
The latency ring stays per process: it is the recent experience of this worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ...errors import ConfigurationError
from ...health.windows import BucketedCounter, Clock, RecentUsers, RequestCounts
from ...llm.budget import InMemorySpend
from ...llm.learned import InMemoryLearnedLimits
from ...llm.quota import InMemoryQuota, QuotaUsage
from ...llm.stores import LlmStores
from ...slo.windows import ObjectiveWindow, SloWindow
from .link import PendingOps, RedisLink
from .llm import SharedLearnedLimits, SharedSpend
from .slo_windows import SharedSloWindow

if TYPE_CHECKING:
    import redis

    from ...settings import Settings
    from ...slo.objectives import Objective

logger = logging.getLogger(__name__)


_DAY_SECONDS = 86_400
#: Life of the random identity-hashing key kept in Redis (apps without SECRET_KEY), and how
#: often a process reads it again, extending that life.
_HASH_KEY_TTL = _DAY_SECONDS
_HASH_KEY_REFRESH = 3600.0


class SharedRequestWindow:
    """Requests and errors over the last *window_seconds*, counted by every process.

    Each request adds to a pending count per time bucket; the link sends the counts in
    batches (``HINCRBY`` per bucket). Reads send this process's pending counts first.

    :param link: the app's Redis link.
    :param local: this process's window: always updated, read while Redis is away.
    :param clock: wall-clock seconds (shared by hosts, unlike a monotonic clock).
    """

    def __init__(self, link: RedisLink, local: BucketedCounter, *, clock: Clock = time.time):
        self.link = link
        self.local = local
        self.clock = clock
        self.width = local.width
        self.buckets = local.buckets
        self._ttl = math.ceil(local.window_seconds + 2 * local.width)
        self._pending: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        link.add_source(self._take)

    @property
    def window_seconds(self) -> float:
        return self.local.window_seconds

    def record(self, error: bool) -> None:
        self.local.record(error)
        interval = int(self.clock() // self.width)
        with self._lock:
            counts = self._pending.get(interval)
            if counts is None:
                counts = self._pending[interval] = [0, 0]
            counts[0] += 1
            if error:
                counts[1] += 1
        self.link.maybe_flush()

    def _take(self) -> PendingOps | None:
        with self._lock:
            if not self._pending:
                return None
            pending, self._pending = self._pending, {}

        def ops(pipe: redis.client.Pipeline) -> None:
            for interval, (requests, errors) in pending.items():
                key = self.link.key("health", "requests", interval)
                pipe.hincrby(key, "requests", requests)
                if errors:
                    pipe.hincrby(key, "errors", errors)
                pipe.expire(key, self._ttl)

        return ops

    def _slots(self, r: redis.Redis) -> list[tuple[int, int]]:
        interval = int(self.clock() // self.width)
        pipe = r.pipeline(transaction=False)
        for i in range(interval - self.buckets + 1, interval + 1):
            pipe.hmget(self.link.key("health", "requests", i), "requests", "errors")
        return [(int(req or 0), int(err or 0)) for req, err in pipe.execute()]

    def counts(self) -> RequestCounts:
        self.link.flush()

        def op(r: redis.Redis) -> RequestCounts:
            slots = self._slots(r)
            return RequestCounts(
                sum(s[0] for s in slots), sum(s[1] for s in slots), self.window_seconds
            )

        return self.link.run(op, self.local.counts)

    def series(self) -> tuple[RequestCounts, ...]:
        """Counts per time slot, oldest first (the status page's plot)."""
        self.link.flush()

        def op(r: redis.Redis) -> tuple[RequestCounts, ...]:
            return tuple(RequestCounts(req, err, self.width) for req, err in self._slots(r))

        return self.link.run(op, self.local.series)


class SharedUserWindow:
    """Distinct identities seen by any process in the last *window_seconds*.

    Identities are stored as keyed BLAKE2b digests, never as sent. The key comes from
    *secret* (the app's ``SECRET_KEY``) or, without one, from a random key kept in Redis
    (see the module's documentation).

    :param link: the app's Redis link.
    :param local: this process's window: always updated, read while Redis is away.
    :param secret: the app's ``SECRET_KEY``, or ``None``.
    :param clock: wall-clock seconds.
    """

    def __init__(
        self,
        link: RedisLink,
        local: RecentUsers,
        *,
        secret: str | bytes | None = None,
        clock: Clock = time.time,
    ):
        self.link = link
        self.local = local
        self.clock = clock
        self._key = link.key("users")
        #: What this window counts from: apps whose windows share it count users once.
        self.store = (link.server, self._key)
        self._salt_key = link.key("users", "hash-key")
        self._hash_key: bytes | None = None
        # When the key kept in Redis is read again (never, with a secret of the app's).
        self._hash_key_expires = math.inf
        if isinstance(secret, (str, bytes)) and secret:
            raw = secret.encode() if isinstance(secret, str) else secret
            # Bound to the prefix: two services with one SECRET_KEY still get unrelated sets.
            self._hash_key = hmac.new(
                raw, b"flask-appmetrics users\0" + link.prefix.encode(), hashlib.sha256
            ).digest()
        self._ttl = math.ceil(local.window_seconds) + 1
        self._pending: dict[bytes, float] = {}
        self._lock = threading.Lock()
        link.add_source(self._take)

    def _shared_hash_key(self, r: redis.Redis) -> bytes:
        # The first replica to get here writes the key; every one reads the same value and
        # extends its life, so it expires only a day after the last replica is gone.
        fresh = secrets.token_hex(32)
        pipe = r.pipeline(transaction=True)
        pipe.set(self._salt_key, fresh, nx=True, ex=_HASH_KEY_TTL)
        pipe.get(self._salt_key)
        pipe.expire(self._salt_key, _HASH_KEY_TTL)
        _, value, _ = pipe.execute()
        stored = fresh.encode() if value is None else value
        # Hashed rather than parsed: whatever the key holds, every replica derives the same.
        return hashlib.sha256(
            stored if isinstance(stored, bytes) else str(stored).encode()
        ).digest()

    def hash_key(self) -> bytes | None:
        """The key identities are hashed with, or ``None`` while Redis cannot be asked."""
        key = self._hash_key
        if key is None or time.monotonic() >= self._hash_key_expires:
            fetched = self.link.run(self._shared_hash_key, lambda: None)
            if fetched is not None:
                key = self._hash_key = fetched
                self._hash_key_expires = time.monotonic() + min(
                    self.local.window_seconds, _HASH_KEY_REFRESH
                )
        return key

    @staticmethod
    def _member(digest: bytes, key: bytes) -> str:
        """What Redis stores for the identity of *digest* (see :meth:`_digest`)."""
        return hashlib.blake2b(digest, key=key, digest_size=12).hexdigest()

    @staticmethod
    def _digest(identity: str) -> bytes:
        # Fixed size while pending: an identity can be a long header value, and up to
        # max_tracked of them wait for the next flush. Never sent: only keyed hashes are.
        return hashlib.blake2b(identity.encode(), digest_size=32).digest()

    def touch(self, identity: str) -> None:
        self.local.touch(identity)
        digest = self._digest(identity)
        now = self.clock()
        with self._lock:
            pending = self._pending
            pending.pop(digest, None)  # re-inserted last: the dict stays in sighting order
            pending[digest] = now
            if len(pending) > self.local.max_tracked:
                del pending[next(iter(pending))]
        self.link.maybe_flush()

    def _take(self) -> PendingOps | None:
        with self._lock:
            if not self._pending:
                return None
            pending, self._pending = self._pending, {}
        key = self.hash_key()
        if key is None:
            return None  # Redis is away: dropped, as a failed flush drops them
        # Hashed here, once per identity and flush rather than once per request.
        members = {self._member(digest, key): seen for digest, seen in pending.items()}
        horizon = self.clock() - self.local.window_seconds

        def ops(pipe: redis.client.Pipeline) -> None:
            # Add, expire by age, cap by size, refresh the key's TTL.
            pipe.zadd(self._key, members)
            pipe.zremrangebyscore(self._key, "-inf", horizon)
            pipe.zremrangebyrank(self._key, 0, -(self.local.max_tracked + 1))
            pipe.expire(self._key, self._ttl)

        return ops

    def count(self) -> int:
        self.link.flush()
        horizon = self.clock() - self.local.window_seconds

        def op(r: redis.Redis) -> int:
            return min(int(r.zcount(self._key, f"({horizon}", "+inf")), self.local.max_tracked)

        return self.link.run(op, self.local.count)


class SharedQuota:
    """API quota usage of every process, per minute and per day in *timezone*.

    :param link: the app's Redis link.
    :param local: this process's quota: always updated, used while Redis is away.
    :param timezone: IANA zone whose midnight starts a new day.
    :param clock: wall-clock seconds.
    """

    def __init__(
        self,
        link: RedisLink,
        local: InMemoryQuota,
        timezone: str,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.link = link
        self.local = local
        self.clock = clock
        self._zone = ZoneInfo(timezone)

    def _keys(self) -> tuple[str, str]:
        now = self.clock()
        day = datetime.fromtimestamp(now, self._zone).date().isoformat()
        return self.link.key("quota", "minute", int(now // 60)), self.link.key("quota", "day", day)

    def add(self, requests: int, tokens: int) -> QuotaUsage:
        local = self.local.add(requests, tokens)
        minute, day = self._keys()

        def op(r: redis.Redis) -> QuotaUsage:
            pipe = r.pipeline(transaction=True)
            pipe.hincrby(minute, "requests", requests)
            pipe.hincrby(minute, "tokens", tokens)
            pipe.expire(minute, 120)
            pipe.hincrby(day, "requests", requests)
            pipe.hincrby(day, "tokens", tokens)
            # A calendar day lasts up to 25 hours (DST); keep it a day longer than that.
            pipe.expire(day, 2 * _DAY_SECONDS)
            rm, tm, _, rd, td, _ = pipe.execute()
            return QuotaUsage(int(rm), int(tm), int(rd), int(td))

        return self.link.run(op, lambda: local)

    def usage(self) -> QuotaUsage:
        minute, day = self._keys()

        def op(r: redis.Redis) -> QuotaUsage:
            pipe = r.pipeline(transaction=False)
            pipe.hmget(minute, "requests", "tokens")
            pipe.hmget(day, "requests", "tokens")
            (rm, tm), (rd, td) = pipe.execute()
            return QuotaUsage(int(rm or 0), int(tm or 0), int(rd or 0), int(td or 0))

        return self.link.run(op, self.local.usage)


@dataclass(frozen=True)
class SharedWindows:
    """The Redis-backed windows of one app."""

    link: RedisLink
    requests: SharedRequestWindow
    users: SharedUserWindow
    quota: SharedQuota
    #: LLM spend today and learned quota limits.
    llm: LlmStores
    #: The service level objectives' period (``APPMETRICS_SLO_WINDOW_DAYS``).
    slo_period_seconds: float = 30 * _DAY_SECONDS

    def slo_window(self, objective: Objective) -> ObjectiveWindow:
        """A window of *objective*'s requests shared by every process."""
        return SharedSloWindow(self.link, objective, SloWindow(self.slo_period_seconds))


#: App names many unrelated services have (``Flask(__name__)`` in ``app.py``, ``python
#: app.py``): as the default prefix they would share one Redis's windows.
_GENERIC_APP_NAMES = frozenset({"app", "__main__", "main", "wsgi", "application", "server", "api"})


def redis_prefix(template: str, app_name: str) -> str:
    """``APPMETRICS_REDIS_PREFIX`` with ``{app_name}`` replaced by the app's name."""
    if "{app_name}" in template and app_name in _GENERIC_APP_NAMES:
        logger.warning(
            "flask-appmetrics: the Redis key prefix uses the app's name %r, which other "
            "services often have too; services that share it on one Redis share their health "
            "and quota windows. Set APPMETRICS_REDIS_PREFIX to a name of this service.",
            app_name,
        )
    return template.replace("{app_name}", app_name)


def shared_windows(
    settings: Settings,
    *,
    app_name: str = "",
    secret: str | bytes | None = None,
    on_error: Callable[[str], None] | None = None,
) -> SharedWindows | None:
    """The app's shared windows, or ``None`` when ``APPMETRICS_REDIS_URL`` is not set.

    No connection is made here: an app must start even while Redis is down.

    :param app_name: the Flask app's name, for ``{app_name}`` in the key prefix.
    :param secret: the app's ``SECRET_KEY``: the key user identities are hashed with.
    """
    if settings.redis.url is None:
        return None
    try:
        import redis  # noqa: F401 - only to report a missing extra clearly
    except ImportError as exc:
        raise ConfigurationError(
            "APPMETRICS_REDIS_URL",
            "is set but the redis package is not installed: pip install 'flask-appmetrics[redis]'",
        ) from exc
    redis_settings = dataclasses.replace(
        settings.redis, prefix=redis_prefix(settings.redis.prefix, app_name)
    )
    link = RedisLink(redis_settings, on_error=on_error)
    health = settings.health
    requests = SharedRequestWindow(link, BucketedCounter(health.error_window_seconds))
    users = SharedUserWindow(
        link,
        RecentUsers(health.users_window_seconds, max_tracked=health.users_max_tracked),
        secret=secret,
    )
    if not isinstance(secret, (str, bytes)) or not secret:
        logger.warning(
            "flask-appmetrics: the app has no SECRET_KEY; user identities in Redis are hashed "
            "with a random key kept in Redis (%s), so whoever reads Redis could test guessed "
            "identities against them. Set SECRET_KEY to keep that key out of Redis.",
            users._salt_key,
        )
    timezone = settings.shared.quota_timezone
    quota = SharedQuota(link, InMemoryQuota(timezone), timezone)
    llm = LlmStores(
        SharedSpend(link, InMemorySpend(timezone), timezone),
        SharedLearnedLimits(link, InMemoryLearnedLimits()),
    )
    logger.info(
        "flask-appmetrics: health and quota windows shared through %s under prefix %r",
        link.where,
        link.prefix,
    )
    return SharedWindows(link, requests, users, quota, llm, settings.slo.period_seconds)
