"""Service level objectives as declared: what they promise and which requests they count.

Pure Python. An objective is one promise about one kind of indicator (SLI):

* ``availability``: a share of requests (``target``, e.g. ``0.999``) does not fail with a
  5xx status;
* ``latency``: a share of requests finishes within ``threshold_seconds``.

Both are judged over a rolling window (``APPMETRICS_SLO_WINDOW_DAYS``, 30 days by
default). A :class:`Declaration` is what the app wrote (``@metrics.slo(...)`` on a view,
``metrics.slo(...)(blueprint)``, :meth:`FlaskMetrics.add_slo
<flask_appmetrics.FlaskMetrics.add_slo>` or an ``APPMETRICS_SLOS`` entry): one or two
objectives and a :class:`Scope`, the requests they count. Which URL rules a scope covers is
known only once the app's routes are registered; :mod:`flask_appmetrics.slo.routes`
resolves it then.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError

Sli = Literal["availability", "latency"]
ScopeKind = Literal["app", "blueprint", "endpoints", "view"]

#: The configuration key of objectives declared in config.
CONFIG_KEY = "APPMETRICS_SLOS"

#: What an objective's name may hold: it becomes the ``slo`` label of the generated rules
#: and alerts, and a key of the health report.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
#: ``"300ms"``, ``"0.3s"``, ``"2s"``: a latency threshold as written in a declaration.
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*")
#: The smallest error budget accepted (a 99.9999 % target): below it, one failure in a
#: million requests spends the budget and no window of a process holds enough requests.
_MIN_BUDGET = 1e-6
#: Keys of one ``APPMETRICS_SLOS`` entry.
_ENTRY_KEYS = frozenset({"name", "availability", "latency", "blueprint", "endpoints"})


@dataclass(frozen=True)
class Objective:
    """One promise: *target* of the requests in scope are good, over the rolling window.

    :param name: the objective's name (the ``slo`` label of its rules and alerts).
    :param sli: ``availability`` (good: not a 5xx) or ``latency`` (good: finished within
        *threshold_seconds*, whatever the status).
    :param target: the share of good requests promised, ``0 < target < 1``.
    :param threshold_seconds: the latency bound; ``None`` for availability.
    """

    name: str
    sli: Sli
    target: float
    threshold_seconds: float | None = None

    @property
    def budget(self) -> float:
        """The share of requests allowed to be bad: ``1 - target``."""
        return 1.0 - self.target

    @property
    def key(self) -> tuple[str, Sli]:
        """What identifies the objective within an app: its name and indicator."""
        return (self.name, self.sli)

    def is_bad(self, duration_seconds: float, status: int) -> bool:
        """Whether one finished request spends this objective's budget."""
        if self.threshold_seconds is not None:
            return duration_seconds > self.threshold_seconds
        return status >= 500

    def describe(self) -> str:
        """The promise in words: ``99.9% of requests do not fail with a 5xx``."""
        share = f"{self.target * 100:.10g}%"
        if self.threshold_seconds is not None:
            return f"{share} of requests finish within {format_seconds(self.threshold_seconds)}"
        return f"{share} of requests do not fail with a 5xx"


@dataclass(frozen=True)
class Scope:
    """Which requests a declaration counts.

    * ``app``: every request of the app but those of the extension's own endpoints;
    * ``blueprint``: the views of *blueprint* (and of blueprints nested in it);
    * ``endpoints``: the views registered under these Flask endpoint names;
    * ``view``: the view function *view*, under whatever endpoints it is registered.
    """

    kind: ScopeKind
    blueprint: str | None = None
    endpoints: tuple[str, ...] = ()
    view: Callable[..., Any] | None = None

    def describe(self) -> str:
        if self.kind == "blueprint":
            return f"blueprint {self.blueprint!r}"
        if self.kind == "endpoints":
            return (
                "endpoint"
                + ("s " if len(self.endpoints) > 1 else " ")
                + ", ".join(repr(e) for e in self.endpoints)
            )
        if self.kind == "view" and self.view is not None:
            return f"view {_qualname(self.view)}"
        return "the whole app"


@dataclass(frozen=True)
class Declaration:
    """Objectives as the app declared them, before their scope meets the app's routes.

    :param scope: the requests they count.
    :param name: the objectives' name; ``None`` takes the scope's (see
        :func:`default_name`).
    :param availability: the availability target, or ``None``.
    :param latency: ``(threshold_seconds, target)``, or ``None``.
    :param source: where it was declared, for messages (``APPMETRICS_SLOS[0]``,
        ``@metrics.slo on search``).
    :param per_app: declared in this app's config (its scope must exist in the app), rather
        than on the extension for every app it initialises.
    """

    scope: Scope
    name: str | None
    availability: float | None
    latency: tuple[float, float] | None
    source: str
    per_app: bool = False

    def objectives(self, name: str) -> tuple[Objective, ...]:
        """The declared objectives under *name*: availability first, then latency."""
        found: list[Objective] = []
        if self.availability is not None:
            found.append(Objective(name, "availability", self.availability))
        if self.latency is not None:
            threshold, target = self.latency
            found.append(Objective(name, "latency", target, threshold))
        return tuple(found)

    @property
    def thresholds(self) -> tuple[float, ...]:
        return () if self.latency is None else (self.latency[0],)


def format_seconds(seconds: float) -> str:
    """``0.3`` -> ``300 ms``, ``2.5`` -> ``2.5 s``."""
    if seconds < 1.0:
        return f"{seconds * 1000.0:.6g} ms"
    return f"{seconds:.6g} s"


def _qualname(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))


def parse_target(value: object, where: str, what: str) -> float:
    """A target share: a number strictly between 0 and 1 (``0.999`` for 99.9 %)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(where, f"{what} must be a number like 0.999, got {value!r}")
    target = float(value)
    if not math.isfinite(target) or not 0.0 < target < 1.0:
        hint = f" (for {target:g}% write {target / 100:g})" if 1.0 < target < 100.0 else ""
        raise ConfigurationError(
            where, f"{what} must be between 0 and 1, exclusive, got {value!r}{hint}"
        )
    if 1.0 - target < _MIN_BUDGET:
        raise ConfigurationError(
            where, f"{what} {value!r} leaves an error budget below {_MIN_BUDGET:g}"
        )
    return target


def parse_threshold(value: object, where: str) -> float:
    """A latency threshold in seconds, from ``"300ms"``, ``"0.3s"`` or a number of seconds."""
    seconds: float
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ConfigurationError(
                where, f"latency threshold must look like '300ms' or '0.3s', got {value!r}"
            )
        number, unit = float(match.group(1)), match.group(2)
        seconds = number / 1000.0 if unit == "ms" else number
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            where, f"latency threshold must be '300ms', '0.3s' or seconds, got {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0.0:
        raise ConfigurationError(where, f"latency threshold must be above 0, got {value!r}")
    return seconds


def parse_latency(value: object, where: str) -> tuple[float, float]:
    """``(threshold, target)`` from ``("300ms", 0.99)`` or ``{"threshold": .., "target": ..}``."""
    if isinstance(value, Mapping):
        extra = set(value) - {"threshold", "target"}
        if extra or "threshold" not in value or "target" not in value:
            raise ConfigurationError(
                where, f"latency must have the keys 'threshold' and 'target', got {dict(value)!r}"
            )
        threshold, target = value["threshold"], value["target"]
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        threshold, target = value
    else:
        raise ConfigurationError(
            where, f"latency must be (threshold, target), e.g. ('300ms', 0.99), got {value!r}"
        )
    return parse_threshold(threshold, where), parse_target(target, where, "latency target")


def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ConfigurationError(
            where,
            "an objective's name must be 1 to 64 letters, digits, '_', '.' or '-' "
            f"(not starting with '.' or '-'), got {name!r}",
        )
    return name


def declare(
    scope: Scope,
    *,
    name: object = None,
    availability: object = None,
    latency: object = None,
    source: str,
    per_app: bool = False,
) -> Declaration:
    """A validated :class:`Declaration`.

    :raises ConfigurationError: a value is malformed (the key is *source*), or neither
        objective is given.
    """
    if availability is None and latency is None:
        raise ConfigurationError(source, "declares no objective: give availability= or latency=")
    return Declaration(
        scope=scope,
        name=None if name is None else check_name(name, source),
        availability=None
        if availability is None
        else parse_target(availability, source, "availability"),
        latency=None if latency is None else parse_latency(latency, source),
        source=source,
        per_app=per_app,
    )


def _endpoint_names(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(
            where, f"endpoints must be a list of endpoint names, got {value!r}"
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(where, f"endpoint names must be non-empty strings: {item!r}")
    return tuple(value)


def from_config(value: object) -> tuple[Declaration, ...]:
    """The declarations of ``APPMETRICS_SLOS``: a list of mappings, each with
    ``availability`` and/or ``latency``, an optional ``name``, and an optional scope
    (``blueprint``: a blueprint name, or ``endpoints``: Flask endpoint names); without
    one, the objectives count the whole app.

    :raises ConfigurationError: an entry is malformed (named by its index).
    """
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigurationError(
            CONFIG_KEY, f"expected a list of objectives (mappings), got {value!r}"
        )
    declarations = []
    for index, entry in enumerate(value):
        where = f"{CONFIG_KEY}[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(where, f"expected a mapping, got {entry!r}")
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            raise ConfigurationError(
                where,
                f"unknown key {unknown[0]!r}; an objective has {', '.join(sorted(_ENTRY_KEYS))}",
            )
        if "blueprint" in entry and "endpoints" in entry:
            raise ConfigurationError(where, "give blueprint or endpoints, not both")
        scope = Scope("app")
        if "blueprint" in entry:
            blueprint = entry["blueprint"]
            if not isinstance(blueprint, str) or not blueprint:
                raise ConfigurationError(where, f"blueprint must be a name, got {blueprint!r}")
            scope = Scope("blueprint", blueprint=blueprint)
        elif "endpoints" in entry:
            endpoints = _endpoint_names(entry["endpoints"], where)
            if "name" not in entry and len(endpoints) > 1:
                raise ConfigurationError(where, "objectives over several endpoints need a name")
            scope = Scope("endpoints", endpoints=endpoints)
        declarations.append(
            declare(
                scope,
                name=entry.get("name"),
                availability=entry.get("availability"),
                latency=entry.get("latency"),
                source=where,
                per_app=True,
            )
        )
    return tuple(declarations)


def default_name(scope: Scope, endpoints: Sequence[str]) -> str:
    """The name of objectives declared without one: ``app`` for the whole app, the
    blueprint's name, the endpoint's name (a view registered once), else the view
    function's name."""
    if scope.kind == "blueprint" and scope.blueprint is not None:
        return scope.blueprint
    if scope.kind == "endpoints" and len(scope.endpoints) == 1:
        return scope.endpoints[0]
    if scope.kind == "view":
        if len(endpoints) == 1:
            return endpoints[0]
        if scope.view is not None:
            return str(getattr(scope.view, "__name__", "view"))
    return "app"


def bucket_boundary(threshold: float, buckets: Sequence[float]) -> float | None:
    """The boundary of *buckets* equal to *threshold* (within float rounding), or ``None``."""
    for bound in buckets:
        if math.isclose(bound, threshold, rel_tol=1e-9, abs_tol=1e-12):
            return bound
    return None


def threshold_problem(declaration: Declaration, buckets: Sequence[float]) -> str | None:
    """Why *declaration*'s latency threshold cannot be measured, or ``None`` when it can.

    The latency indicator is read from ``http_request_duration_seconds``: Prometheus can
    count the requests within the threshold only when it is one of the histogram's bucket
    boundaries (``le``), so any other threshold is refused rather than approximated.
    """
    for threshold in declaration.thresholds:
        if bucket_boundary(threshold, buckets) is None:
            shown = ", ".join(f"{b:g}" for b in buckets)
            return (
                f"latency threshold {format_seconds(threshold)} ({threshold:g} s) is not a "
                "bucket boundary of http_request_duration_seconds, so Prometheus cannot "
                f"count the requests within it. Boundaries (s): {shown}. Pick one of them, "
                f"or add {threshold:g} to APPMETRICS_BUCKETS."
            )
    return None
