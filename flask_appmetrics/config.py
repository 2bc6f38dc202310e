"""``APPMETRICS_*`` configuration: key names, defaults and validation.

Each key is read once, in ``init_app``, with ``app.config.setdefault`` so that the
effective value is visible in ``app.config``; a bad value raises
:class:`~flask_appmetrics.errors.ConfigurationError` naming the key, at start rather than
on the first request.

Each concern has its own frozen settings class and loader below; :class:`Settings`
gathers them. Keys are listed in :data:`DEFAULTS`, which the README's configuration
table is checked against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

#: Prometheus client's default histogram buckets, in seconds.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

#: Every key the extension reads, with its default. Concerns add their keys here.
DEFAULTS: dict[str, Any] = {
    # -- endpoints ------------------------------------------------------------------
    "APPMETRICS_METRICS_PATH": "/metrics",
    "APPMETRICS_HEALTH_PATH": "/api/health",
    "APPMETRICS_LIVEZ_PATH": "/livez",
    "APPMETRICS_READYZ_PATH": "/readyz",
    # -- HTTP instrumentation -------------------------------------------------------
    "APPMETRICS_BUCKETS": DEFAULT_BUCKETS,
    "APPMETRICS_EXCLUDE_PATHS": (),
    "APPMETRICS_MAX_ERROR_TYPES": 50,
    # -- behaviour ------------------------------------------------------------------
    "APPMETRICS_STRICT": False,
}


@dataclass(frozen=True)
class HttpSettings:
    """How requests are measured."""

    #: Histogram buckets of ``http_request_duration_seconds``, increasing, in seconds.
    buckets: tuple[float, ...]
    #: Request paths starting with one of these are not recorded at all.
    exclude_paths: tuple[str, ...]
    #: Distinct ``error_type`` values kept before the rest are counted as ``other``.
    max_error_types: int


@dataclass(frozen=True)
class EndpointSettings:
    """Where the extension's own views are served; ``None`` turns one off."""

    metrics_path: str | None
    health_path: str | None
    livez_path: str | None
    readyz_path: str | None


@dataclass(frozen=True)
class Settings:
    """Everything ``init_app`` read from ``app.config``."""

    http: HttpSettings
    endpoints: EndpointSettings
    #: Raise on bad input to helpers and signals instead of logging it.
    strict: bool


class ConfigReader:
    """Reads typed values from a Flask config, writing back the defaults it used."""

    def __init__(self, config: MutableMapping[str, Any]) -> None:
        self._config = config

    def raw(self, key: str) -> Any:
        return self._config.setdefault(key, DEFAULTS[key])

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise ConfigurationError(key, f"expected True or False, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigurationError(key, f"must be at least {minimum}, got {value}")
        return value

    def number(
        self, key: str, *, minimum: float = 0.0, maximum: float = math.inf, optional: bool = False
    ) -> float | None:
        value = self.raw(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(key, f"expected a number, got {value!r}")
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise ConfigurationError(
                key, f"must be a finite number between {minimum} and {maximum}, got {value!r}"
            )
        return float(value)

    def text(self, key: str, *, optional: bool = False) -> str | None:
        value = self.raw(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigurationError(key, f"expected a non-empty string, got {value!r}")
        return value

    def path(self, key: str) -> str | None:
        value = self.text(key, optional=True)
        if value is not None and not value.startswith("/"):
            raise ConfigurationError(key, f"must start with '/' (or be None), got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
            raise ConfigurationError(key, f"expected a list of strings, got {value!r}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise ConfigurationError(key, f"expected non-empty strings, got {item!r}")
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key)
        if not isinstance(value, Mapping):
            raise ConfigurationError(key, f"expected a mapping, got {value!r}")
        return value


def _buckets(reader: ConfigReader) -> tuple[float, ...]:
    key = "APPMETRICS_BUCKETS"
    value = reader.raw(key)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(key, f"expected a non-empty list of numbers, got {value!r}")
    buckets: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or math.isnan(item):
            raise ConfigurationError(key, f"bucket bounds must be numbers, got {item!r}")
        buckets.append(float(item))
    if any(b <= a for a, b in itertools.pairwise(buckets)):
        raise ConfigurationError(key, f"bucket bounds must be strictly increasing, got {value!r}")
    return tuple(b for b in buckets if b != math.inf)


def load_settings(config: MutableMapping[str, Any]) -> Settings:
    """Read, default and validate every ``APPMETRICS_*`` key of *config*."""
    reader = ConfigReader(config)
    known = set(DEFAULTS)
    unknown = sorted(k for k in config if k.startswith("APPMETRICS_") and k not in known)
    if unknown:
        raise ConfigurationError(unknown[0], "unknown flask-appmetrics setting (a typo?)")
    http = HttpSettings(
        buckets=_buckets(reader),
        exclude_paths=reader.strings("APPMETRICS_EXCLUDE_PATHS"),
        max_error_types=reader.integer("APPMETRICS_MAX_ERROR_TYPES", minimum=1),
    )
    endpoints = EndpointSettings(
        metrics_path=reader.path("APPMETRICS_METRICS_PATH"),
        health_path=reader.path("APPMETRICS_HEALTH_PATH"),
        livez_path=reader.path("APPMETRICS_LIVEZ_PATH"),
        readyz_path=reader.path("APPMETRICS_READYZ_PATH"),
    )
    return Settings(http=http, endpoints=endpoints, strict=reader.boolean("APPMETRICS_STRICT"))
