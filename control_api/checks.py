"""Component health checks run in the background with one deadline per status call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any


class CheckRunner:
    """Runs checks on a bounded pool, at most one run per component at a time. A status call made while
    a component's check is still running waits on that same run instead of starting another, so a hung
    component holds one thread however often the page is asked for, and two first-time set-ups of the
    same adapter (say the embedded MLflow database's migrations) never run side by side."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="status-check")
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future] = {}

    def run(self, checks: dict[str, Callable[[], Any]], timeout: float) -> dict[str, Any]:
        """Each check's result, for those done within ``timeout``; the others are left out and keep running."""
        with self._lock:
            futures = {}
            for name, check in checks.items():
                running = self._in_flight.get(name)
                if running is None or running.done():
                    running = self._in_flight[name] = self._pool.submit(check)
                futures[name] = running
        wait(futures.values(), timeout=timeout)
        return {name: future.result() for name, future in futures.items() if future.done()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
