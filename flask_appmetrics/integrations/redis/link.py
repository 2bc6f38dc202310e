"""The Redis connection behind the shared windows, and its fallback switch.

:class:`RedisLink` owns one client per app with short timeouts and no retries, runs every
operation with a local fallback (:meth:`RedisLink.run`), switches to the local windows for
``APPMETRICS_REDIS_RETRY_SECONDS`` after a failure and back on the next success (logging
both), and sends the windows' batched updates (:meth:`RedisLink.flush`). See
:mod:`flask_appmetrics.integrations.redis.windows` for the windows themselves.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ...health.windows import Clock

if TYPE_CHECKING:
    import redis

    from ...settings import RedisSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Adds a window's pending updates to the flush pipeline.
PendingOps = Callable[["redis.client.Pipeline"], None]


def _display(url: str) -> str:
    """*url* without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _server(url: str) -> str:
    """*url* without credentials: the server and database it names (what two links must
    share to read the same keys)."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class RedisLink:
    """The Redis client of one app, and the switch between shared and local windows.

    :param settings: the app's Redis settings (``settings.url`` must be set).
    :param clock: monotonic clock for the retry delay.
    :param on_error: told ``"redis"`` when a Redis operation fails.
    """

    def __init__(
        self,
        settings: RedisSettings,
        *,
        clock: Clock = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        assert settings.url is not None
        self.prefix = settings.prefix
        self.where = _display(settings.url)
        #: The server and database, without credentials.
        self.server = _server(settings.url)
        self._retry_seconds = settings.retry_seconds
        self._clock = clock
        self._on_error = on_error
        # No retries and short timeouts: the bound on what one request can wait for Redis.
        self.client: redis.Redis = redis.Redis.from_url(
            settings.url,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._down_until: float | None = None
        #: Failed operations since start (each one cost at most the socket timeout).
        self.failures = 0
        #: Batches of window updates sent (one round trip each).
        self.flushes = 0
        self._flush_seconds = settings.flush_seconds
        self._sources: list[Callable[[], PendingOps | None]] = []
        self._next_flush = 0.0
        self._flush_lock = threading.Lock()
        _live_links.add(self)

    @property
    def available(self) -> bool:
        """Whether the last operation reached Redis."""
        return self._down_until is None

    def key(self, *parts: object) -> str:
        return ":".join((self.prefix, *(str(p) for p in parts)))

    def run(self, op: Callable[[redis.Redis], T], fallback: Callable[[], T]) -> T:
        """``op(client)``, or ``fallback()`` if Redis is away or fails now."""
        down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            return fallback()
        try:
            result = op(self.client)
        except self._errors as exc:
            self._mark_down(exc)
            return fallback()
        if down_until is not None:
            self._mark_up()
        return result

    def add_source(self, take: Callable[[], PendingOps | None], *, first: bool = False) -> None:
        """Register a window's ``take``: hands over its pending updates, or ``None``.

        :param first: call it before the sources registered so far (one that feeds them:
            the request log that hands requests over to the windows).
        """
        if first:
            self._sources.insert(0, take)
        else:
            self._sources.append(take)

    def maybe_flush(self) -> None:
        """Send pending window updates if ``APPMETRICS_REDIS_FLUSH_SECONDS`` have passed:
        at most one round trip per interval and process, whatever the request rate."""
        if self._clock() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Send every window's pending updates now, in one ``MULTI`` pipeline.

        Updates that cannot be sent (Redis away) are dropped: the local windows, which
        are always up to date, stand in for them until Redis is back.
        """
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is sending: it takes our updates too
        try:
            self._next_flush = self._clock() + self._flush_seconds
            ops = [op for take in self._sources if (op := take()) is not None]
            if not ops:
                return

            def send(r: redis.Redis) -> None:
                pipe = r.pipeline(transaction=True)
                for op in ops:
                    op(pipe)
                pipe.execute()
                self.flushes += 1

            self.run(send, nothing)
        finally:
            self._flush_lock.release()

    def check(self) -> bool:
        """The ``redis`` health check: passes while windows are shared."""
        self.run(lambda r: r.ping(), lambda: False)
        if not self.available:
            raise RuntimeError(f"Redis at {self.where} unavailable: using local windows")
        return True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            was_up = self._down_until is None
            self._down_until = self._clock() + self._retry_seconds
        if was_up:
            logger.warning(
                "flask-appmetrics: Redis at %s unavailable (%s: %s); health and quota windows "
                "fall back to this process's local windows, retrying every %g s",
                self.where,
                type(exc).__name__,
                exc,
                self._retry_seconds,
            )
        if self._on_error is not None:
            self._on_error("redis")

    def _mark_up(self) -> None:
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = None
        if was_down:
            logger.warning(
                "flask-appmetrics: Redis at %s is back; windows are shared again", self.where
            )


def nothing() -> None:
    """The fallback of a write: the local window already has it."""
    return


#: Links of apps still alive, weakly: dropped apps' links are not kept alive.
_live_links: weakref.WeakSet[RedisLink] = weakref.WeakSet()


def _flush_at_exit() -> None:
    for link in list(_live_links):
        try:
            link.flush()
        except Exception:  # one link's failure must not cost the others their last batch
            logger.exception("flask-appmetrics: Redis flush at exit failed")


# A worker that exits (gunicorn's max_requests, a graceful restart) sends its last batch.
# Registered once for the process, not once per app: a test suite builds many apps.
atexit.register(_flush_at_exit)
