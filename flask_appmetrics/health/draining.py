"""Draining: a server told to stop keeps serving for a while, and says it is not ready.

A load balancer (or Kubernetes' endpoints controller) stops sending traffic to a replica
some seconds after the replica starts failing its readiness probe. A server that closes
its listeners the moment it gets SIGTERM drops the requests sent in between. Draining
closes that gap: for ``APPMETRICS_DRAIN_SECONDS`` after SIGTERM the server keeps
accepting and serving while ``/readyz`` answers 503 with the reason; then the signal is
handled as it would have been (gunicorn's graceful shutdown, or the process's default).

Two pieces, pure Python:

* :class:`DrainFlag`: whether the server is draining, why, and until when. It lives in
  a page of anonymous shared memory made when this module is first imported, so every
  process forked afterwards shares it: gunicorn's master imports this module with its
  config module, before it forks the workers, and a drain its SIGTERM handler starts is
  seen by every worker's ``/readyz``. In a process that forks nothing it is simply this
  process's flag.
* :class:`SigtermDrain`: a SIGTERM handler that starts the drain, waits, and then hands
  the signal to whatever handled it before (gunicorn's master queues it for its main
  loop; a process without a handler of its own, such as the development server, dies of
  it as before). A second SIGTERM during the drain changes nothing: SIGINT or SIGQUIT
  still stop the server at once.

Only the main thread may set signal handlers, and only a handler Python knows can be
handed the signal afterwards; :meth:`SigtermDrain.install` refuses otherwise.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

logger = logging.getLogger("flask_appmetrics")

# started (time.time(), 0 when not draining), deadline (0 when none), the drain seconds a
# SIGTERM handler was armed with in the server's master (0 when none), reason length.
_HEADER = struct.Struct("<dddH")
_STARTED = struct.Struct("<d")
_REASON_BYTES = 256
_SIZE = _HEADER.size + _REASON_BYTES

#: The reason ``/readyz`` gives for a drain started by SIGTERM.
SIGTERM_REASON = "draining: the server was told to stop (SIGTERM)"
#: The reason of :meth:`DrainFlag.start` when none is given.
DEFAULT_REASON = "draining: shutting down"

#: What a signal handler can be, as :func:`signal.getsignal` returns it.
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@dataclass(frozen=True)
class Drain:
    """A drain in progress."""

    #: Why the server is not ready (shown by ``/readyz``).
    reason: str
    #: When it started (``time.time()``).
    started: float
    #: When the server stops serving (``time.time()``), if known.
    deadline: float | None

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the server stops serving; ``None`` when unknown."""
        if self.deadline is None:
            return None
        return max(self.deadline - (time.time() if now is None else now), 0.0)

    def describe(self, now: float | None = None) -> str:
        """The reason, with the time left when known."""
        left = self.seconds_left(now)
        return self.reason if left is None else f"{self.reason}; stops serving in {left:.1f} s"

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        left = self.seconds_left(now)
        return {
            "reason": self.reason,
            "started": round(self.started, 3),
            "seconds_left": None if left is None else round(left, 3),
        }


class DrainFlag:
    """Whether the server this process belongs to is draining: one page of shared memory,
    made at construction, so processes forked afterwards read and write the same flag."""

    def __init__(self) -> None:
        # mmap(-1, ...) is anonymous and MAP_SHARED on POSIX: shared with forked children.
        self._map = mmap.mmap(-1, _SIZE)
        self._lock = threading.Lock()

    def _header(self) -> tuple[float, float, float, int]:
        started, deadline, armed, length = _HEADER.unpack_from(self._map, 0)
        return started, deadline, armed, length

    def start(self, reason: str = DEFAULT_REASON, seconds: float | None = None) -> Drain:
        """Start draining (or update the drain in progress) for *reason*; *seconds* is
        when the server will stop serving, if known. Returns the drain."""
        now = time.time()
        encoded = reason.encode("utf-8")[:_REASON_BYTES].decode("utf-8", "ignore").encode()
        with self._lock:
            started, _, armed, _ = self._header()
            deadline = 0.0 if seconds is None else now + max(seconds, 0.0)
            # Reason and deadline first, the start last: a reader in another process sees
            # either no drain or a whole one.
            self._map[_HEADER.size : _HEADER.size + len(encoded)] = encoded
            _HEADER.pack_into(self._map, 0, started, deadline, armed, len(encoded))
            if not started:
                _STARTED.pack_into(self._map, 0, now)
        drain = self.current()
        assert drain is not None
        return drain

    def current(self) -> Drain | None:
        """The drain in progress, or ``None``."""
        started, deadline, _, length = self._header()
        if not started:
            return None
        reason = bytes(self._map[_HEADER.size : _HEADER.size + length]).decode("utf-8", "replace")
        return Drain(reason, started, deadline or None)

    def clear(self) -> None:
        """Not draining any more (and not armed)."""
        with self._lock:
            _HEADER.pack_into(self._map, 0, 0.0, 0.0, 0.0, 0)

    def arm(self, seconds: float) -> None:
        """Note that this process's SIGTERM handler drains for *seconds* (read by the
        processes it forks, which then leave SIGTERM to it)."""
        with self._lock:
            started, deadline, _, length = self._header()
            _HEADER.pack_into(self._map, 0, started, deadline, seconds, length)

    def armed(self) -> float:
        """The drain seconds a SIGTERM handler of this process or its parent was armed
        with; 0 when none."""
        return self._header()[2]


class SigtermDrain:
    """A SIGTERM handler that drains first, then hands the signal on.

    :param flag: the drain flag it sets.
    """

    def __init__(self, flag: DrainFlag) -> None:
        self._flag = flag
        self._previous: Handler = signal.SIG_DFL
        self._seconds = 0.0
        self._log: Callable[[str], None] = logger.info
        self._waiter: threading.Thread | None = None
        self._due = False

    @property
    def installed(self) -> bool:
        """Whether SIGTERM is handled by this object now."""
        return signal.getsignal(signal.SIGTERM) == self._handle

    def install(self, seconds: float, *, log: Callable[[str], None] | None = None) -> bool:
        """Drain for *seconds* on SIGTERM, then hand the signal to its current handler.

        Returns ``False`` (and changes nothing) when called outside the main thread or
        when SIGTERM's current handler is not one Python can call (set by C code).

        :param log: where to say that a drain starts and ends (the server's log).
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGTERM)
        if current is None:
            return False
        if current != self._handle:
            self._previous = current
            signal.signal(signal.SIGTERM, self._handle)
        self._seconds = seconds
        if log is not None:
            self._log = log
        self._flag.arm(seconds)
        return True

    def uninstall(self) -> None:
        """Give SIGTERM back to the handler it had before :meth:`install` (main thread)."""
        if self.installed:
            signal.signal(signal.SIGTERM, self._previous)
        self._waiter = None
        self._due = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler: no logging here (the main thread may hold the log's lock);
        # the waiter thread says what happens.
        if self._due:
            self._due = False
            self._hand_on(signum, frame)
            return
        if self._waiter is not None:
            return  # already draining: SIGINT or SIGQUIT stop at once
        seconds = self._seconds
        self._flag.start(SIGTERM_REASON, seconds)
        self._waiter = threading.Thread(
            target=self._wait, args=(seconds,), name="appmetrics-drain", daemon=True
        )
        self._waiter.start()

    def _wait(self, seconds: float) -> None:
        self._log(
            f"flask-appmetrics: SIGTERM received: draining for {seconds:g} s "
            "(/readyz answers 503, requests are still served), then shutting down"
        )
        time.sleep(seconds)
        self._log("flask-appmetrics: drain over, shutting down")
        self._due = True
        # Back to the main thread, where the signal's previous handler must run.
        os.kill(os.getpid(), signal.SIGTERM)

    def _hand_on(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # What would have happened without us: the process ends by the signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


#: This server's drain flag, made when this module is first imported (by gunicorn's
#: master with the config module, before it forks: then every worker shares it).
PROCESS_DRAIN = DrainFlag()
#: The process's SIGTERM drain handler (signals are per process).
SIGTERM_DRAIN = SigtermDrain(PROCESS_DRAIN)
