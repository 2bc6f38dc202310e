"""gunicorn configuration for several workers sharing one ``/metrics`` page.

Use it as the config module::

    PROMETHEUS_MULTIPROC_DIR=/run/myapp-metrics \\
        gunicorn -c python:flask_appmetrics.gunicorn -w 4 'myapp:create_app()'

or import its hooks in your own ``gunicorn.conf.py``::

    from flask_appmetrics.gunicorn import child_exit, on_starting, when_ready

``PROMETHEUS_MULTIPROC_DIR`` must be in the environment of the gunicorn process itself
(prometheus_client reads it when first imported, which the master does when it loads this
module); gunicorn's ``--env``/``raw_env`` sets it too late and is refused at start.

What the hooks do:

* importing this module (gunicorn loads its config first) creates the directory, so that
  an app preloaded with ``--preload`` finds it;
* :func:`on_starting` (master, once): removes metric files of earlier runs (keeping the
  master's own when the app was preloaded) and nothing else (files prometheus_client does
  not write are left alone, with a warning); refuses to start (exit with a message) when
  the setup is broken, or when several workers would each serve their own numbers
  because the variable is unset.
* :func:`when_ready` (master): logs where metrics are aggregated; with
  ``APPMETRICS_DRAIN_SECONDS`` (in gunicorn's environment) above 0, makes the master drain
  on SIGTERM: it keeps accepting and its workers keep serving for that many seconds while
  their ``/readyz`` answers 503 with the reason, then gunicorn's graceful shutdown runs as
  usual (listeners closed, workers given ``--graceful-timeout`` to finish). SIGINT and
  SIGQUIT still stop at once. Send SIGTERM to the master only (Kubernetes and Docker do;
  with systemd use ``KillMode=mixed``): a worker told to stop by itself stops.
* :func:`child_exit` (master, per dead worker, also after ``SIGKILL``): folds the worker's
  counters, histograms and non-``live`` gauges into the directory's archive and deletes
  its files, ``live*`` gauges included (as
  :func:`prometheus_client.multiprocess.mark_process_dead` does), so a worker killed
  mid-request leaves no stuck ``http_requests_in_progress`` and the directory stays as
  small as the number of live workers however often they are recycled.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Protocol

from .config import DRAIN_KEY, drain_seconds_from_environment
from .errors import ConfigurationError
from .health.draining import SIGTERM_DRAIN
from .metrics.multiprocess.setup import ENV_VAR, check_setup, fold_exited, prepare_directory

__all__ = ["child_exit", "on_starting", "when_ready"]


class _Log(Protocol):
    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...
    def error(self, msg: str, *args: Any) -> None: ...


class _Config(Protocol):
    @property
    def workers(self) -> int: ...


class _Server(Protocol):
    """The parts of gunicorn's ``Arbiter`` the hooks use."""

    @property
    def log(self) -> _Log: ...
    @property
    def cfg(self) -> _Config: ...


class _Worker(Protocol):
    @property
    def pid(self) -> int: ...


def _create_directory() -> None:
    # gunicorn loads its config before the app, but with --preload it loads the app before
    # calling on_starting: create the directory now so that init_app finds it. Emptying it
    # waits for on_starting, which knows the master's pid; errors are reported there too.
    path = os.environ.get(ENV_VAR)
    if path:
        with contextlib.suppress(OSError):
            os.makedirs(path, exist_ok=True)


_create_directory()


def on_starting(server: _Server) -> None:
    """Prepare the multiprocess directory, or stop gunicorn with the reason.

    :raises SystemExit: the setup would give a wrong or empty ``/metrics`` page, or
        ``APPMETRICS_DRAIN_SECONDS`` is not a number of seconds.
    """
    path = os.environ.get(ENV_VAR)
    try:
        drain_seconds_from_environment()
        if path is None:
            workers = server.cfg.workers
            if workers > 1:
                raise ConfigurationError(
                    ENV_VAR,
                    f"is not set but gunicorn runs {workers} workers: each scrape would show "
                    "the numbers of whichever worker answered. Set it to an empty directory "
                    "in gunicorn's environment, or run one worker.",
                )
            check_setup()
            return
        # The master may already hold files of its own (an app preloaded with --preload).
        removed = prepare_directory(path, keep_pid=os.getpid())
        check_setup()
    except ConfigurationError as exc:
        server.log.error("flask-appmetrics: %s", exc)
        raise SystemExit(f"flask-appmetrics: {exc}") from exc
    server.log.info(
        "flask-appmetrics: multiprocess metrics in %s (%d stale files removed)", path, removed
    )


def when_ready(server: _Server) -> None:
    """Log how ``/metrics`` aggregates the workers; drain on SIGTERM when asked to."""
    path = os.environ.get(ENV_VAR)
    if path is not None:
        server.log.info("flask-appmetrics: /metrics sums all workers' files in %s", path)
    # gunicorn set its signal handlers just before this hook: ours goes in front of its
    # SIGTERM handler, which gets the signal once the drain is over.
    try:
        seconds = drain_seconds_from_environment()
    except ConfigurationError:  # refused by on_starting already, if that hook is in use
        seconds = 0.0
    if seconds <= 0:
        return
    if SIGTERM_DRAIN.install(seconds, log=server.log.info):
        server.log.info(
            "flask-appmetrics: on SIGTERM, workers keep serving for %g s while /readyz "
            "answers 503, then gunicorn shuts down gracefully",
            seconds,
        )
    else:
        server.log.warning(
            "flask-appmetrics: %s is set but SIGTERM cannot be deferred here", DRAIN_KEY
        )


#: How long the master waits for a fold another process is doing (a scrape's).
_FOLD_WAIT_SECONDS = 2.0


def child_exit(server: _Server, worker: _Worker) -> None:
    """Fold the files of a worker that exited (however it died) into the archive.

    Never raises: a fold that cannot be done now is done by the next scrape.
    """
    path = os.environ.get(ENV_VAR)
    if path is not None:
        fold_exited(path, (worker.pid,), wait_seconds=_FOLD_WAIT_SECONDS)
