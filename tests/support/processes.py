"""Stopping the process groups of servers the tests start."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group. The group
    gets SIGKILL at the end even when the leader is already gone: ``mlflow server`` runs uvicorn as a
    child, which outlived its parent's SIGTERM in CI and stayed behind as an orphan."""
    if proc is None:
        return
    for signal_number in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signal_number)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
