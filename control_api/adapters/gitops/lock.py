"""One writer at a time on a working clone: threads of this process and other processes alike.

``flock`` alone would serialize threads too (each acquisition opens its own file description), but
the in-process lock keeps waiting threads off the file and makes the ordering obvious.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    workdir = workdir.resolve()
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(workdir, threading.Lock())
    with thread_lock:
        workdir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = workdir.parent / f".{workdir.name}.lock"
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
