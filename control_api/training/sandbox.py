"""The training sandbox: what a user's script may see and do while it trains.

With ``training.sandbox`` = ``auto`` (default) or ``required``, and the service running as root on a
machine where ``unshare`` works, every script runs

* as its own uid, leased from ``training.sandbox_uid_first`` .. ``+ sandbox_uid_count`` for the length
  of the run (so ``RLIMIT_NPROC``, which counts per uid, counts this script only), with the group
  ``training.sandbox_gid`` and no supplementary groups, under ``no_new_privs``;
* in new PID, mount and IPC namespaces, on a root filesystem that holds only the system directories and
  the virtual environment (read-only), its working directory (read-write), the socket of its tracking
  door, a fresh ``/proc`` and a minimal ``/dev`` (see ``sandbox_init.py``). The MLflow store (database,
  artifact folders, a tracking server's credentials), the service's home directory (``~/.aws``,
  ``~/.docker/config.json``, git credentials), its data directory (journal, API keys), the Docker
  socket and every other process of the machine are absent. The script logs to MLflow through the
  tracking door (``tracking_door.py``), which accepts operations on its own run only;
* in a new network namespace with only loopback, since the environment is built beforehand by the
  service and MLflow is reached through the door (``training.sandbox_network=host`` keeps the host
  network, for scripts that download data);
* under rlimits: CPU seconds, address space, file size, open files, processes.

When the script exits, the namespace's init exits and the kernel kills whatever is left in it, detached
(double-forked, ``setsid``) processes included. When the service dies, ``setpriv --pdeathsig`` and
``unshare --kill-child`` take the whole namespace down with it.

``auto`` falls back to the older, weaker isolation (rlimits, cleared environment, own process group)
when the sandbox cannot work here, and says so in the step log and on ``/mlops/status``; ``required``
refuses to train instead; ``off`` never sandboxes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from control_api.errors import TerminalError, TransientError

INIT_SCRIPT = Path(__file__).with_name("sandbox_init.py")
LOCAL_SCHEMES = ("sqlite", "file", "")
TMPFS_BYTES = 64 * 2**20  # size of the sandbox's /tmp and /dev/shm (RAM-backed; TMPDIR is on disk)
SYSTEM_LOCK_DIR = Path("/run/lock")
# The init points these at its forwarded loopback port (the tracking door) before it starts the script.
DOOR_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class TrainingSandboxUnavailable(TerminalError):
    code = "training_sandbox_unavailable"


class TrainingSandboxFailed(TerminalError):
    code = "training_sandbox_failed"


class TrainingSandboxBusy(TransientError):
    code = "training_sandbox_busy"


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str


@dataclass(frozen=True)
class SandboxPlan:
    enabled: bool
    note: str


@dataclass(frozen=True)
class SandboxConfig:
    """Everything ``run_script`` needs to start one script in the sandbox."""

    uid: int
    gid: int
    root: Path
    read_only: tuple[Path, ...]
    read_write: tuple[Path, ...]
    isolate_network: bool
    max_processes: int
    tmp_bytes: int = TMPFS_BYTES
    shm_bytes: int = TMPFS_BYTES
    door_socket: Path | None = None  # the tracking door's Unix socket (its folder is in read_write)
    workdir_bytes: int | None = None  # size of the tmpfs the working directory is inside the sandbox


# ---- starting the init ---------------------------------------------------------------------------


def command(isolate_network: bool) -> list[str]:
    """setpriv --pdeathsig: the namespace dies with the service; --kill-child: with unshare itself."""
    cmd = [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "unshare",
        "--pid",
        "--mount",
        "--ipc",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
    ]
    if isolate_network:
        cmd.append("--net")
    return [*cmd, "--", sys.executable, "-I", "-S", str(INIT_SCRIPT)]


def init_config(
    sandbox: SandboxConfig,
    *,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    limits: dict[str, int | tuple[int, int]],
    status_fd: int,
) -> bytes:
    """The JSON ``sandbox_init.py`` reads on stdin (its ``InitConfig``)."""
    return json.dumps(
        {
            "root": str(sandbox.root),
            "uid": sandbox.uid,
            "gid": sandbox.gid,
            "read_only": [str(p) for p in sandbox.read_only],
            "read_write": [str(p) for p in sandbox.read_write],
            "tmp_bytes": sandbox.tmp_bytes,
            "shm_bytes": sandbox.shm_bytes,
            "loopback": sandbox.isolate_network,
            "cwd": str(cwd),
            "argv": argv,
            "env": env,
            "limits": limits,
            "status_fd": status_fd,
            "workdir_bytes": sandbox.workdir_bytes,
            "door": {"socket": str(sandbox.door_socket), "env": list(DOOR_URI_VARIABLES)}
            if sandbox.door_socket
            else None,
        }
    ).encode()


def outer_environment(run_id: str | None = None) -> dict[str, str]:
    """unshare and the init get a fixed minimal environment: the script's own (which a deploy request
    fills) never reaches a process running as root. MLFLOW_RUN_ID lets a restarted service recognise an
    interrupted training (see the train step's resume)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if run_id:
        env["MLFLOW_RUN_ID"] = run_id
    return env


# ---- can this machine sandbox? -------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_result: Availability | None = None


def probe() -> Availability:
    """Start the sandbox once with nothing to run (cached for the life of the process)."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe()
        return _probe_result


def _probe() -> Availability:
    if os.geteuid() != 0:
        return Availability(False, "the service does not run as root, so it cannot run the script as another user")
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return Availability(False, f"{' and '.join(missing)} (util-linux) not found")
    root = Path(tempfile.mkdtemp(prefix="mlops-sandbox-probe-"))
    read_fd, write_fd = os.pipe()
    try:
        config = SandboxConfig(
            uid=65534, gid=65534, root=root, read_only=(), read_write=(), isolate_network=True, max_processes=16
        )
        payload = json.loads(
            init_config(config, argv=["/bin/true"], env={}, cwd=Path("/"), limits={}, status_fd=write_fd)
        )
        payload["probe"] = True
        proc = subprocess.run(
            command(True),
            input=json.dumps(payload).encode(),
            capture_output=True,
            timeout=30,
            pass_fds=(write_fd,),
            env=outer_environment(),
            start_new_session=True,
        )
        os.close(write_fd)
        write_fd = -1
        answer = read_all(read_fd).strip()
        if answer == "ok":
            return Availability(True, "namespaces, mounts and uid switch work")
        detail = (
            answer.removeprefix("error ").strip()
            or proc.stderr.decode(errors="replace").strip()[-300:]
            or f"exit {proc.returncode}"
        )
        return Availability(False, f"unshare failed: {detail}")
    except (OSError, subprocess.SubprocessError) as exc:
        return Availability(False, f"could not start unshare: {exc}")
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        shutil.rmtree(root, ignore_errors=True)


def read_all(fd: int) -> str:
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


def plan(mode: str) -> SandboxPlan:
    """Whether this training runs sandboxed; raises when ``required`` cannot be met."""
    if mode == "off":
        return SandboxPlan(
            False,
            "training sandbox is off (MLOPS_TRAINING__SANDBOX=off): the script runs as the "
            "service's user, with rlimits, a cleared environment and its own process group only",
        )
    availability = probe()
    if availability.available:
        return SandboxPlan(True, "")
    if mode == "required":
        raise TrainingSandboxUnavailable(
            f"the training sandbox is required (MLOPS_TRAINING__SANDBOX=required) but unavailable here: "
            f"{availability.reason}. Run the service as root on a machine where `unshare --pid --mount --net` "
            f"works (util-linux), or set MLOPS_TRAINING__SANDBOX=auto to train with rlimits only."
        )
    return SandboxPlan(
        False,
        f"training sandbox unavailable ({availability.reason}): the script runs as the service's "
        f"user, with rlimits, a cleared environment and its own process group only",
    )


def status(mode: str) -> dict[str, str]:
    """For /mlops/status: raises (unhealthy) only when the sandbox is required and cannot work."""
    if mode == "off":
        return {"detail": "off: scripts run as the service's user"}
    availability = probe()
    if availability.available:
        return {
            "detail": f"{mode}: sandboxed (own uid; PID, mount and IPC namespaces; loopback-only network "
            f"unless MLOPS_TRAINING__SANDBOX_NETWORK=host; MLflow through the run's tracking door)"
        }
    if mode == "required":
        raise TrainingSandboxUnavailable(f"required but unavailable: {availability.reason}")
    return {"detail": f"degraded: {availability.reason}; scripts run as the service's user with rlimits only"}


# ---- per-run preparation -------------------------------------------------------------------------


def interpreter_prefix(venv: Path) -> Path | None:
    """The base installation a virtual environment's python links to (it must be mounted too)."""
    real = Path(os.path.realpath(venv / "bin" / "python"))
    prefix = real.parent.parent
    return prefix if prefix != Path("/") else None


def hand_over_workdir(workdir: Path, uid: int, gid: int) -> None:
    for dirpath, _dirnames, filenames in os.walk(workdir):
        os.chown(dirpath, uid, gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    os.chmod(workdir, 0o700)


def lock_dir(data_path: Path) -> Path:
    """Uid leases are machine-wide when possible (/run/lock), so several services on one machine do not
    hand the same uid to two scripts; else per data directory."""
    candidate = SYSTEM_LOCK_DIR / "mlops-training-sandbox"
    if SYSTEM_LOCK_DIR.is_dir():
        try:
            candidate.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(candidate)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not (st.st_mode & 0o022):
                return candidate
        except OSError:
            pass
    fallback = data_path / "sandbox" / "uid-locks"
    fallback.mkdir(parents=True, exist_ok=True, mode=0o700)
    return fallback


@contextmanager
def lease_uid(first: int, count: int, locks: Path) -> Iterator[int]:
    """Hold an exclusive lock on one uid of the range for the duration of a training."""
    for uid in range(first, first + count):
        fd = os.open(locks / f"{uid}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    raise TrainingSandboxBusy(
        f"all {count} sandbox uids ({first}..{first + count - 1}) are in use by running trainings; "
        f"raise MLOPS_TRAINING__SANDBOX_UID_COUNT or deploy again later"
    )
