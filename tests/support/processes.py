"""Process groups in tests: stopping the servers the tests start, and looking for what is still alive."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


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


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still alive (zombies waiting to be reaped are not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members
