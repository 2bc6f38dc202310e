"""prometheus_client's multiprocess mode: checks, directory preparation, the scrape registry.

With ``PROMETHEUS_MULTIPROC_DIR`` set *before* prometheus_client is imported, every metric
value lives in a per-process mmap file in that directory, and a scrape aggregates all the
files and the archive of exited workers (:mod:`flask_appmetrics.metrics.multiprocess.archive`,
folded by
gunicorn's ``child_exit`` or by the scrape itself). Three things go wrong silently in practice, and
each is turned into a :class:`~flask_appmetrics.errors.ConfigurationError` here:

* the variable is set after prometheus_client was imported (gunicorn's ``--env``, or
  ``os.environ`` assigned in the app module): values stay in process memory and the page
  shows whichever worker answered;
* the directory is missing or not writable: prometheus_client fails on the first metric
  update, inside a request;
* the variable was removed after import: the scrape would find no directory.

How each gauge of the catalog is aggregated over the workers (the ``multiprocess_mode``
of its :class:`~flask_appmetrics.metrics.registration.MetricSpec`, or a value computed when
``/metrics`` is served, since gauges computed by a function at scrape time have no file
value worth reading):

===================================  ==========================================================
``http_requests_in_progress``        ``livesum``: requests being served by live workers; a
                                     killed worker's share goes with it (at its fold)
``circuit_breaker_state``            ``livemax``: each worker has its own breaker; the worst
                                     state among live workers
``quota_limit``                      ``livemax``: configuration, as the live workers have it
                                     (after a reload with new limits, an exited worker's
                                     old ones are not shown)
``flask_appmetrics_info``            ``livemax``: always 1, for the versions live workers run
``cache_hit_rate``                   derived from the all-workers ``cache_operations_total``;
                                     absent before the first get
``cache_size_bytes``,                the scraping worker's reading: exact for a shared cache
``cache_items_count``                backend (Redis, Memcached), one worker's for a per-process
                                     cache
``quota_*`` (six gauges),            with ``APPMETRICS_REDIS_URL``: read from Redis by the
``concurrent_users``,                scraping worker, hence exact; without it every worker has
``quota_learned_limit``,             its own window and the families are left out rather
``gemini_api_spend_today_usd``,      than showing one worker's numbers
``gemini_api_budget_remaining_usd``
``gemini_api_daily_budget_usd``      configuration: the scraping worker's, the same in all
``health_check_up``,                 the scraping worker's checks (its cached results, stale
``health_check_duration_seconds``,   ones run within their timeout) and verdict: checks are
``app_health_status``                about dependencies every worker shares, and a value
                                     written to a file by each worker would be as old as the
                                     last probe that worker served (or run every check once
                                     per worker per scrape); the verdict's traffic windows are
                                     the scraping worker's unless shared through Redis
===================================  ==========================================================

Counters and histograms are summed over every file and the archive. One registry
per process: two registries declaring the same name would write the same file keys.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...errors import ConfigurationError
from ..catalog import HEALTH_FAMILIES, hit_rate
from ..exemplars import TRACE_LABEL, attach_exemplars
from ..registration import value_class_is_multiprocess
from ..registry_state import registry_state
from .archive import ArchiveError, dead_pids, fold, metric_files
from .exemplar_file import read_exemplars
from .exposition import Collected, Encoder, carries_exemplars, render
from .files import LOCK_NAME, foreign_files, is_own_file, parse_name
from .reader import scrape_directory
from .series import Aggregate

logger = logging.getLogger(__name__)

#: The environment variable prometheus_client reads at import time.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV_VAR = "prometheus_multiproc_dir"


def check_setup() -> str | None:
    """Return the multiprocess directory if multiprocess mode is on and usable, else ``None``.

    :raises ConfigurationError: the mode is half on (variable set after prometheus_client
        was imported, or removed since), or the directory is missing or not writable.
    """
    path = os.environ.get(ENV_VAR)
    if path is None and _LEGACY_ENV_VAR in os.environ:
        raise ConfigurationError(
            ENV_VAR,
            f"only the deprecated lower-case {_LEGACY_ENV_VAR} is set; "
            f"set {ENV_VAR} instead (before the server starts)",
        )
    active = value_class_is_multiprocess()
    if path is None:
        if active:
            raise ConfigurationError(
                ENV_VAR,
                "was set when prometheus_client was imported but has been removed since; "
                "the scrape would find no metric files",
            )
        return None
    if not active:
        raise ConfigurationError(
            ENV_VAR,
            f"is set ({path!r}) but prometheus_client was imported before it was, so every "
            "worker keeps its metrics in memory and each scrape would show one worker only. "
            "Set it in the environment of the server process (not with gunicorn --env or "
            "os.environ in the app).",
        )
    check_directory(path)
    warn_foreign_files(path)
    return path


def check_directory(path: str) -> None:
    """Raise :class:`ConfigurationError` unless *path* is a directory we can create files in."""
    if not path:
        raise ConfigurationError(ENV_VAR, "is set but empty")
    if not os.path.isdir(path):
        raise ConfigurationError(
            ENV_VAR, f"{path!r} is not a directory (create it, empty, before the server starts)"
        )
    # os.access says yes to root on read-only mounts; only creating a file tells the truth.
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigurationError(ENV_VAR, f"cannot write in {path!r}: {exc}") from exc


def prepare_directory(path: str, *, keep_pid: int | None = None) -> int:
    """Create *path* if needed and delete metric files of earlier runs.

    Called once by the server's master process before workers start: a file left by an
    earlier run would otherwise add its counters to this run's totals. Only the files
    prometheus_client writes (``counter_<pid>.db``, ``gauge_<mode>_<pid>.db``...) and
    flask-appmetrics' own archive are deleted; anything else is left alone, with a warning.

    :param keep_pid: a process whose files are kept (the gunicorn master itself, when the
        app was preloaded in it and already opened its files).
    :returns: the number of files removed.
    :raises ConfigurationError: the directory cannot be created or emptied.
    """
    try:
        os.makedirs(path, exist_ok=True)
        removed = 0
        names = os.listdir(path)
        for name in names:
            parsed = parse_name(name)
            if parsed is not None:
                if parsed.pid == keep_pid:
                    continue
            elif not is_own_file(name) or name == LOCK_NAME:
                continue
            os.remove(os.path.join(path, name))
            removed += 1
    except OSError as exc:
        raise ConfigurationError(ENV_VAR, f"cannot prepare {path!r}: {exc}") from exc
    check_directory(path)
    warn_foreign_files(path, names)
    return removed


_WARNED_FOREIGN: set[str] = set()
_FOREIGN_SHOWN = 5


def warn_foreign_files(path: str, names: list[str] | None = None) -> list[str]:
    """Log a warning (once per process and directory) if *path* holds files that are not
    metric files: they are never touched, but a directory shared with other data is one
    where a mistake can cost that data."""
    try:
        foreign = foreign_files(os.listdir(path) if names is None else names)
    except OSError:
        return []
    if foreign and path not in _WARNED_FOREIGN:
        _WARNED_FOREIGN.add(path)
        shown = ", ".join(foreign[:_FOREIGN_SHOWN])
        more = f" and {len(foreign) - _FOREIGN_SHOWN} more" if len(foreign) > _FOREIGN_SHOWN else ""
        logger.warning(
            "flask-appmetrics: %s=%s holds files that are not prometheus_client's (%s%s); "
            "they are left alone, but give the metrics a directory of their own",
            ENV_VAR,
            path,
            shown,
            more,
        )
    return foreign


# -- the scrape side -----------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedGauge:
    """A gauge family whose multiprocess value is not read from the files.

    :param name: the family name it replaces in the aggregated output.
    :param compute: given the aggregated families by name, the family to serve instead
        (``None``: leave the family out).
    """

    name: str
    compute: Callable[[Mapping[str, Metric]], Metric | None]


@dataclass(frozen=True)
class LocalGauges:
    """Gauge families served as the scraping worker's *collector* gives them, collected
    once per scrape (the quota gauges then cost one read of the counter).

    :param names: the families taken from the collector's output.
    :param omitted: families left out of the output altogether.
    """

    collector: Collector
    names: frozenset[str]
    omitted: frozenset[str] = frozenset()


def sample_sum(families: Mapping[str, Metric], family: str, sample: str, **labels: str) -> float:
    """Sum of the samples *sample* of *family* whose labels include *labels*."""
    metric = families.get(family)
    if metric is None:
        return 0.0
    total = 0.0
    for s in metric.samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def _cache_hit_rate(families: Mapping[str, Metric]) -> Metric:
    hits = sample_sum(
        families, "cache_operations", "cache_operations_total", operation="get", result="hit"
    )
    misses = sample_sum(
        families, "cache_operations", "cache_operations_total", operation="get", result="miss"
    )
    gauge = GaugeMetricFamily(
        "cache_hit_rate",
        "Cache hit ratio of get operations since start (0-1), all workers; absent before the first",
        labels=(),
    )
    rate = hit_rate(hits, misses)
    if rate is not None:
        gauge.add_metric([], rate)
    return gauge


#: Derived from the all-workers counters.
CACHE_HIT_RATE = DerivedGauge("cache_hit_rate", _cache_hit_rate)

#: Gauges computed at scrape time from a window: right across workers only when the window
#: is shared (Redis); otherwise each worker has its own and no file holds a usable value.
WINDOW_GAUGES = (
    "quota_requests_current_minute",
    "quota_requests_today",
    "quota_tokens_current_minute",
    "quota_tokens_today",
    "quota_rpm_remaining",
    "quota_tpm_remaining",
    "concurrent_users",
    "quota_learned_limit",
    "gemini_api_spend_today_usd",
    "gemini_api_budget_remaining_usd",
)
#: Gauges computed at scrape time from the app's cache objects: served as the scraping
#: worker sees them (exact for a shared cache backend such as Redis or Memcached).
LOCAL_GAUGES = ("cache_size_bytes", "cache_items_count", "gemini_api_daily_budget_usd")
#: The catalog's gauges whose file values no scrape reads: an exited worker's are dropped.
SCRAPE_TIME_GAUGES = frozenset(("cache_hit_rate", *WINDOW_GAUGES, *LOCAL_GAUGES))
#: The catalog's configuration gauges (``livemax``): an exited worker's configuration is
#: not the server's any more. Also dropped from files and archives an earlier version
#: wrote with ``max``, which would otherwise keep a reloaded limit or version forever.
CONFIGURATION_GAUGES = frozenset(("quota_limit", "flask_appmetrics_info"))
#: Gauge families never kept in the archive.
NOT_ARCHIVED = SCRAPE_TIME_GAUGES | CONFIGURATION_GAUGES


def derived_gauges(
    registry: CollectorRegistry, *, shared_windows: bool
) -> tuple[DerivedGauge | LocalGauges, ...]:
    """How the scrape-time gauges of *registry* (its apps' metric set) are served.

    :param shared_windows: whether quota and users windows are shared (Redis): then the
        scraping worker's scrape-time values are everybody's; otherwise those gauges are
        left out rather than showing one worker's numbers.
    """
    out: list[DerivedGauge | LocalGauges] = [CACHE_HIT_RATE]
    state = registry_state(registry)
    windows = frozenset(WINDOW_GAUGES)
    # The hit rate is derived from every worker's counters, not the scraping one's.
    served = frozenset(LOCAL_GAUGES) | (windows if shared_windows else frozenset())
    omitted = frozenset() if shared_windows else windows
    if state.scrape_time is not None:
        out.append(LocalGauges(state.scrape_time, served, omitted))
    if state.health_gauges is not None:
        health = frozenset(f.name for f in HEALTH_FAMILIES)
        out.append(LocalGauges(state.health_gauges, health))
    metric_set = state.metric_set
    if shared_windows and metric_set is not None:
        users = metric_set.metrics["concurrent_users"]
        out.append(LocalGauges(users, frozenset({"concurrent_users"})))
    return tuple(out)


#: Without a metric set: only what the counters give.
DERIVED_GAUGES: tuple[DerivedGauge | LocalGauges, ...] = (CACHE_HIT_RATE,)


def fold_exited(path: str, dead: Iterable[int] = (), *, wait_seconds: float = 0.0) -> int:
    """Fold the files of exited processes into the archive; never raises.

    :param dead: pids known to have exited; others are found by their pid.
    :returns: the number of processes folded.
    """
    try:
        return len(fold(path, dead, wait_seconds=wait_seconds, drop=NOT_ARCHIVED).pids)
    except (OSError, ArchiveError) as exc:
        # Nothing is lost: the files stay and are read as they are until a fold succeeds.
        # Every scrape tries again: say so once per cause, not once per scrape.
        message = str(exc)
        if message not in _FOLD_ERRORS_LOGGED and len(_FOLD_ERRORS_LOGGED) < _FOLD_ERRORS_LIMIT:
            _FOLD_ERRORS_LOGGED.add(message)
            logger.error("flask-appmetrics: cannot fold exited workers' metric files: %s", exc)
        return 0


_FOLD_ERRORS_LOGGED: set[str] = set()
_FOLD_ERRORS_LIMIT = 100


class _Families(Mapping[str, Metric]):
    """The aggregated families by name, each made into a :class:`Metric` only when asked
    for (the derived gauges read one or two)."""

    def __init__(self, aggregate: Aggregate, hidden: frozenset[str]) -> None:
        self._aggregate = aggregate
        self._names = [
            name
            for name in aggregate.table.families
            if name in aggregate.families and name not in hidden
        ]
        self._known = frozenset(self._names)
        self._made: dict[str, Metric] = {}

    def __getitem__(self, name: str) -> Metric:
        made = self._made.get(name)
        if made is None:
            if name not in self._known:
                raise KeyError(name)
            aggregate = self._aggregate
            with aggregate.table.lock:
                made = self._made[name] = aggregate.metric(aggregate.table.families[name])
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class AggregatingCollector:
    """prometheus_client's :class:`MultiProcessCollector` over the live files and the
    archive of exited processes, with derived gauges recomputed.

    :param path: the multiprocess directory.
    :param derived: gauges to compute from the aggregate instead of reading their files.
    """

    def __init__(
        self, path: str, derived: Iterable[DerivedGauge | LocalGauges] = DERIVED_GAUGES
    ) -> None:
        self._path = path
        self._derived = tuple(d for d in derived if isinstance(d, DerivedGauge))
        self._local = tuple(d for d in derived if isinstance(d, LocalGauges))
        self._derived_names = frozenset(d.name for d in self._derived).union(
            *(d.names | d.omitted for d in self._local)
        )

    def _scrape(self) -> Aggregate:
        # Servers without an exit hook (uWSGI, or gunicorn without our config) leave the
        # files of exited workers: fold them here. Another process folding already is
        # enough, so the scrape never waits for the lock.
        try:
            exited = dead_pids(self._path, metric_files(self._path))
        except OSError:
            exited = set()
        if exited:
            fold_exited(self._path, exited)
        return scrape_directory(self._path)

    def _computed(self, families: Mapping[str, Metric]) -> list[Metric]:
        out = []
        for gauge in self._derived:
            metric = gauge.compute(families)
            if metric is not None:
                out.append(metric)
        for local in self._local:
            out.extend(m for m in local.collector.collect() if m.name in local.names)
        return out

    def collect(self) -> Iterable[Metric]:
        families = _Families(self._scrape(), self._derived_names)
        out = [families[name] for name in families]
        # prometheus_client's files hold no exemplar: each process keeps its own.
        attach_exemplars(out, read_exemplars(self._path))
        return out + self._computed(families)

    def encode(self, encoder: Encoder) -> bytes:
        """The page *encoder* writes for :meth:`collect`'s families, made faster by
        keeping each series' line from one scrape to the next
        (:mod:`flask_appmetrics.metrics.multiprocess.exposition`)."""
        aggregate = self._scrape()
        families = _Families(aggregate, self._derived_names)
        # Only a format with exemplars (OpenMetrics) needs them: written after their
        # buckets' kept lines.
        exemplars = read_exemplars(self._path) if carries_exemplars(encoder) else {}
        text = render(
            aggregate, encoder, self._derived_names, exemplars=exemplars, exemplar_label=TRACE_LABEL
        )
        if text is None:
            metrics = [families[name] for name in families]
            attach_exemplars(metrics, exemplars)
            return encoder(Collected(metrics + self._computed(families)))
        return text.encode("utf-8") + encoder(Collected(self._computed(families)))


class ScrapeRegistry(CollectorRegistry):
    """The registry of one multiprocess scrape; :func:`encode` uses its faster path."""

    def __init__(self, collector: AggregatingCollector) -> None:
        # The aggregating collector cannot name its families up front; prometheus_client
        # >= 0.20 needs this flag for ``?name[]=`` filtering to include such a collector.
        try:
            super().__init__(support_collectors_without_names=True)
        except TypeError:  # pragma: no cover - older prometheus_client: no name[] filtering
            super().__init__()
        self.register(collector)
        self.collector = collector


def scrape_registry(
    path: str, derived: Iterable[DerivedGauge | LocalGauges] = DERIVED_GAUGES
) -> CollectorRegistry:
    """A fresh registry aggregating every process's files, as prometheus_client's docs
    recommend for multiprocess mode (one per scrape: no state survives between scrapes
    but the parsed layouts of the files, see :mod:`.reader`)."""
    return ScrapeRegistry(AggregatingCollector(path, derived))


def encode(registry: CollectorRegistry, encoder: Encoder) -> bytes:
    """``encoder(registry)``: the same page, rendered faster for a :func:`scrape_registry`."""
    if isinstance(registry, ScrapeRegistry):
        return registry.collector.encode(encoder)
    return encoder(registry)
