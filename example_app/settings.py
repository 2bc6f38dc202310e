"""The example backend's own configuration (``EXAMPLE_*`` keys, ``GEMINI_API_KEY``).

Like flask-appmetrics' ``APPMETRICS_*`` keys, each is read once at start with
``app.config.setdefault`` (so the effective value shows in ``app.config``) and validated
there. Defaults come from the environment where one is named, so ``python -m example_app``
is configured the twelve-factor way and tests pass a dict.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from .llm import GEMINI_MODEL


class ExampleConfigError(ValueError):
    """A bad ``EXAMPLE_*`` value, named in the message."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def appmetrics_from_environment(config: MutableMapping[str, Any]) -> None:
    """Default each ``APPMETRICS_*`` key from an environment variable of the same name.

    Values are parsed as JSON when they parse (``60``, ``null``, ``["a", "b"]``), else
    taken as strings (``redis://...``), like Flask's ``from_prefixed_env``. Keys already in
    *config* win; a misspelt variable is refused by flask-appmetrics at start.
    """
    for key, raw in os.environ.items():
        if not key.startswith("APPMETRICS_"):
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        config.setdefault(key, value)


def _env_number(name: str) -> float:
    raw = os.environ.get(name, "0")
    try:
        return float(raw)
    except ValueError:
        raise ExampleConfigError(name, f"expected a number, got {raw!r}") from None


def defaults() -> dict[str, Any]:
    """Each key with its default, read from the environment now."""
    return {
        # The Gemini key: its presence switches EXAMPLE_LLM="auto" to the real API.
        "GEMINI_API_KEY": os.environ.get("GEMINI_API_KEY") or None,
        # "auto" (Gemini with a key, else offline), "offline" or "gemini".
        "EXAMPLE_LLM": os.environ.get("EXAMPLE_LLM", "auto"),
        # Model name; None for gemini-2.5-flash.
        "EXAMPLE_MODEL": os.environ.get("EXAMPLE_MODEL") or None,
        # Another Gemini API root (a local stand-in); None for Google's.
        "EXAMPLE_GEMINI_BASE_URL": os.environ.get("EXAMPLE_GEMINI_BASE_URL") or None,
        # Offline server: fraction of calls that fail, and seconds each call takes.
        "EXAMPLE_FAILURE_RATE": _env_number("EXAMPLE_FAILURE_RATE"),
        "EXAMPLE_LATENCY_SECONDS": _env_number("EXAMPLE_LATENCY_SECONDS"),
        # Honour ?fail=1, ?delay=<seconds> and ?scenario=<name> on API requests, offline only
        # (demo only; off in production).
        "EXAMPLE_SIMULATION": os.environ.get("EXAMPLE_SIMULATION", "1") != "0",
        # Breaker: consecutive failures that open it, and seconds before it tries again.
        "EXAMPLE_BREAKER_FAIL_MAX": 5,
        "EXAMPLE_BREAKER_RESET_SECONDS": 30.0,
        # Cache: a Redis URL switches Flask-Caching from SimpleCache (memory) to RedisCache.
        "EXAMPLE_REDIS_URL": os.environ.get("EXAMPLE_REDIS_URL") or None,
        "EXAMPLE_CACHE_SECONDS": 300,
    }


@dataclass(frozen=True)
class ExampleSettings:
    """The validated ``EXAMPLE_*`` settings of one app."""

    llm: str
    api_key: str | None
    model: str
    gemini_base_url: str | None
    failure_rate: float
    latency_seconds: float
    simulation: bool
    breaker_fail_max: int
    breaker_reset_seconds: float
    redis_url: str | None
    cache_seconds: int


def _number(config: MutableMapping[str, Any], key: str, lo: float, hi: float) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ExampleConfigError(key, f"expected a number, got {value!r}")
    if not lo <= value <= hi:
        raise ExampleConfigError(key, f"must be between {lo} and {hi}, got {value!r}")
    return float(value)


def _integer(config: MutableMapping[str, Any], key: str, lo: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ExampleConfigError(key, f"expected an integer >= {lo}, got {value!r}")
    return value


def _optional_text(config: MutableMapping[str, Any], key: str) -> str | None:
    value = config[key]
    if value is not None and (not isinstance(value, str) or not value):
        raise ExampleConfigError(key, f"expected a non-empty string or None, got {value!r}")
    return value


def load(config: MutableMapping[str, Any]) -> ExampleSettings:
    """Default, read and validate the example's keys in *config*.

    :raises ExampleConfigError: a value is invalid; the message names the key.
    """
    for key, value in defaults().items():
        config.setdefault(key, value)
    llm = config["EXAMPLE_LLM"]
    if llm not in ("auto", "offline", "gemini"):
        raise ExampleConfigError("EXAMPLE_LLM", f"expected auto, offline or gemini, got {llm!r}")
    api_key = _optional_text(config, "GEMINI_API_KEY")
    if llm == "auto":
        llm = "gemini" if api_key else "offline"
    if llm == "gemini" and not api_key:
        raise ExampleConfigError("GEMINI_API_KEY", "required when EXAMPLE_LLM is 'gemini'")
    model = _optional_text(config, "EXAMPLE_MODEL") or GEMINI_MODEL
    if not isinstance(config["EXAMPLE_SIMULATION"], bool):
        raise ExampleConfigError("EXAMPLE_SIMULATION", "expected True or False")
    return ExampleSettings(
        llm=llm,
        api_key=api_key,
        model=model,
        gemini_base_url=_optional_text(config, "EXAMPLE_GEMINI_BASE_URL"),
        failure_rate=_number(config, "EXAMPLE_FAILURE_RATE", 0.0, 1.0),
        latency_seconds=_number(config, "EXAMPLE_LATENCY_SECONDS", 0.0, 10.0),
        simulation=config["EXAMPLE_SIMULATION"],
        breaker_fail_max=_integer(config, "EXAMPLE_BREAKER_FAIL_MAX", 1),
        breaker_reset_seconds=_number(config, "EXAMPLE_BREAKER_RESET_SECONDS", 0.0, 3600.0),
        redis_url=_optional_text(config, "EXAMPLE_REDIS_URL"),
        cache_seconds=_integer(config, "EXAMPLE_CACHE_SECONDS", 0),
    )
