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


def _live_processes() -> list[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of every process that is not a
    zombie waiting to be reaped. Field 1 is the parent's pid, field 2 the process group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found.append((int(stat.parent.name), fields))
    return found


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still alive."""
    return [pid for pid, fields in _live_processes() if int(fields[2]) == pgid]


def live_children(executable: str) -> list[int]:
    """This process's live children whose executable is called ``executable``."""
    children = []
    for pid, fields in _live_processes():
        if int(fields[1]) != os.getpid():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if os.path.basename(command) == executable:
            children.append(pid)
    return children


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return any(found == pid for found, _ in _live_processes())
