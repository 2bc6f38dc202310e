"""Hits and misses of a Flask-Caching ``Cache``, without changing the app's calls.

::

    cache = Cache()

    def create_app():
        app = Flask(__name__)
        app.config["CACHE_TYPE"] = "SimpleCache"
        cache.init_app(app)
        metrics.init_app(app)
        instrument_cache(cache, app)          # layer "memory" for SimpleCache
        return app

From then on every lookup of that app's cache backend is counted in
``cache_operations_total{operation="get"}`` (and ``cache_layer_operations_total``): direct
``cache.get``/``get_many``/``get_dict``, ``@cache.cached`` views and ``@cache.memoize``
functions alike, since they all read through the backend's ``get``/``get_many``, which
this wraps on the backend instance. A value of ``None`` counts as a miss (Flask-Caching
itself cannot tell a cached ``None`` from a miss without a second lookup). Flask-Caching's
bookkeeping reads (``@memoize`` version keys) are not counted.

For ``SimpleCache`` the layer's ``cache_items_count`` (stored entries, expired ones included
until pruned) and ``cache_size_bytes`` (their serialized size) are reported by default;
for other backends pass ``size_bytes=``/``items=`` callables.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .. import signals
from ..app_state import state_of
from ..metrics.cache_layers import register_cache_layer
from ..metrics.scrape_time import ValueFunction
from ..recording.send import send

if TYPE_CHECKING:
    from flask_caching import Cache

logger = logging.getLogger("flask_appmetrics")

_MARK = "_appmetrics_instrumented"
# Flask-Caching stores @memoize version hashes under keys ending in this.
_VERSION_SUFFIX = "_memver"
_LAYERS = {
    "SimpleCache": "memory",
    "RedisCache": "redis",
    "RedisSentinelCache": "redis",
    "RedisClusterCache": "redis",
    "FileSystemCache": "filesystem",
    "MemcachedCache": "memcached",
    "SASLMemcachedCache": "memcached",
    "SpreadSASLMemcachedCache": "memcached",
    "NullCache": "null",
    "UWSGICache": "uwsgi",
}


class _Recorder:
    """Replaces a backend's ``get`` and ``get_many``; reports each key looked up."""

    def __init__(self, app: Flask, backend: Any, layer: str) -> None:
        self._app = weakref.ref(app)
        self.layer = layer
        self._get: Callable[..., Any] = backend.get
        self._get_many: Callable[..., list[Any]] = backend.get_many
        # Backends implement get_many with get (or the reverse): count the outer call only.
        self._local = threading.local()

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "busy", False):
            return self._get(key, *args, **kwargs)
        self._local.busy = True
        try:
            value = self._get(key, *args, **kwargs)
        finally:
            self._local.busy = False
        if not key.endswith(_VERSION_SUFFIX):
            self._record((value is not None,))
        return value

    def get_many(self, *keys: str, **kwargs: Any) -> list[Any]:
        if getattr(self._local, "busy", False):
            return self._get_many(*keys, **kwargs)
        self._local.busy = True
        try:
            values = self._get_many(*keys, **kwargs)
        finally:
            self._local.busy = False
        self._record(
            value is not None
            for key, value in zip(keys, values, strict=False)
            if not key.endswith(_VERSION_SUFFIX)
        )
        return values

    def _record(self, hits: Iterable[bool]) -> None:
        app = self._app()
        if app is None:
            return
        try:
            for hit in hits:
                send(signals.cache_event, app, hit=hit, operation="get", layer=self.layer)
        except Exception:
            # Never let metrics break a cache read (another receiver may raise).
            logger.exception("flask-appmetrics could not record a cache lookup")


def _simple_cache_sizes(backend: Any) -> tuple[ValueFunction, ValueFunction]:
    # Private attributes of cachelib's SimpleCache (Flask-Caching's "SimpleCache" backend):
    # no public API gives its entries or its size, and reading them under its own lock is
    # the only way to measure the cache without changing it. cachelib before 0.15 (the
    # newest on Python 3.10) has no lock: there the copy is one C-level call, which no other
    # thread interrupts under the GIL.
    store: dict[str, tuple[float, Any]] = backend._cache
    lock = getattr(backend, "_lock", None) or contextlib.nullcontext()

    def entries() -> list[tuple[float, Any]]:
        with lock:  # the dict changes under concurrent writes
            return list(store.values())

    def size_bytes() -> float:
        return float(sum(len(v) for _, v in entries() if isinstance(v, (bytes, bytearray, str))))

    def items() -> float:
        with lock:
            return float(len(store))

    return size_bytes, items


def instrument_cache(
    cache: Cache,
    app: Flask | None = None,
    *,
    layer: str | None = None,
    size_bytes: ValueFunction | None = None,
    items: ValueFunction | None = None,
) -> str:
    """Count the lookups of *cache*'s backend for *app* (default: the current app).

    Call after ``cache.init_app(app)`` and ``metrics.init_app(app)``. Instrumenting the same
    backend again does nothing.

    :param layer: the ``layer`` label; by default from the backend type (``memory``,
        ``redis``, ``filesystem``, ``memcached``).
    :param size_bytes: scrape-time size of the layer in bytes (``SimpleCache``: built in).
    :param items: scrape-time number of items (``SimpleCache``: built in).
    :returns: the layer name used.
    :raises RuntimeError: the cache or the extension is not initialised on the app.
    """
    target: Flask = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    state = state_of(target)
    if state is None:
        raise RuntimeError(
            f"flask-appmetrics is not initialised on app {target.name!r}; "
            "call metrics.init_app(app) before instrument_cache"
        )
    try:
        backend = target.extensions["cache"][cache]
    except KeyError:
        raise RuntimeError(
            f"this Cache is not initialised on app {target.name!r}; call cache.init_app(app) first"
        ) from None
    kind = type(backend).__name__
    name = layer or _LAYERS.get(kind, kind.lower())
    if getattr(backend, _MARK, None) is not None:
        return str(getattr(backend, _MARK))
    recorder = _Recorder(target, backend, name)
    # Instance attributes shadow the class's methods for this backend only; the Cache
    # object and its decorators call through them unchanged.
    backend.get = recorder.get
    backend.get_many = recorder.get_many
    setattr(backend, _MARK, name)
    if size_bytes is None and items is None and hasattr(backend, "_cache"):
        size_bytes, items = _simple_cache_sizes(backend)
    if size_bytes is not None or items is not None:
        register_cache_layer(state.registry, name, size_bytes=size_bytes, items=items)
    return name
