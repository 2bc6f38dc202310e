"""Threads whose exceptions are collected and whose join is bounded, so a deadlock fails a
test instead of hanging it."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Threads:
    """Starts threads, collects their exceptions, joins them with a timeout."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def start(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                with self._lock:
                    self.errors.append(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float) -> list[str]:
        """Join every thread; return the names of those still running (deadlocked)."""
        for thread in self.threads:
            thread.join(timeout)
        return [t.name for t in self.threads if t.is_alive()]
