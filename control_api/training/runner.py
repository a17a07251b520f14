"""Runs one training script in a subprocess under MLflow tracking.

The script gets a fresh working directory and a cleared environment: only its declared variables and
MLflow's. With a ``SandboxConfig`` it runs in the training sandbox (``sandbox.py``): its own uid, PID,
mount, IPC and usually network namespaces, a root filesystem without the service's files; when it exits
or times out, every process it started dies with the namespace, detached ones included. Without one
(sandbox off or unavailable) it runs in its own session (process group) under rlimits, and a timeout
kills that process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from control_api.errors import TrainingFailed, TrainingTimeout
from control_api.training import sandbox as sandboxing
from control_api.training.sandbox import SandboxConfig, TrainingSandboxFailed

# Variables a Python interpreter needs to behave; everything else of the service's environment
# (credentials above all) stays out of the script's reach.
BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class TrainingOutcome:
    exit_code: int
    duration_seconds: float
    stdout_path: Path
    stderr_path: Path


@dataclass(frozen=True)
class ResourceLimits:
    cpu_seconds: int
    memory_bytes: int
    file_bytes: int
    open_files: int
    # RLIMIT_NPROC counts every process and thread of the real uid, machine-wide, and does not bind
    # root: it is applied only in the sandbox, where the script has a uid of its own.
    processes: int | None = None
    workdir_bytes: int | None = None  # the sandbox's working folder size (a tmpfs), for naming the limit

    def as_dict(self) -> dict[str, int | tuple[int, int]]:
        """(soft, hard) where they differ: at the CPU soft limit the script gets SIGXCPU (its death then
        names the reason); SIGKILL follows 5 s later if it ignores that."""
        limits: dict[str, int | tuple[int, int]] = {
            "RLIMIT_CPU": (self.cpu_seconds, self.cpu_seconds + 5),
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_FSIZE": self.file_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }
        if self.processes is not None:
            limits["RLIMIT_NPROC"] = self.processes
        return limits

    def apply(self) -> None:
        """Runs in the child between fork and exec (no sandbox): the limits bind the script and its children."""
        import resource

        for name, value in self.as_dict().items():
            if name != "RLIMIT_NPROC":
                resource.setrlimit(getattr(resource, name), value if isinstance(value, tuple) else (value, value))


@dataclass(frozen=True)
class ScriptRun:
    python: Path
    script_path: Path
    workdir: Path
    env: dict[str, str]
    timeout_seconds: float
    limits: ResourceLimits | None = None
    sandbox: SandboxConfig | None = None


def build_environment(
    *,
    venv: Path,
    workdir: Path,
    tracking_uri: str,
    registry_uri: str,
    tracking_token: str,
    run_id: str,
    experiment_id: str,
    user_env: dict[str, str],
) -> dict[str, str]:
    env = dict(BASE_ENV)
    # MLflow client credentials of the script's own choosing would replace the door's token.
    env.update({k: v for k, v in user_env.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))})
    # Service-controlled variables go last so a script's environment_vars cannot redirect tracking.
    env.update(
        {
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir / ".tmp"),
            "VIRTUAL_ENV": str(venv),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_REGISTRY_URI": registry_uri,
            "MLFLOW_TRACKING_TOKEN": tracking_token,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLOPS_SERVICE_RUN": "1",
            # The sandbox uid has no passwd entry; getpass.getuser() (MLflow, many libraries) reads these first.
            "USER": "mlops-training",
            "LOGNAME": "mlops-training",
        }
    )
    return env


def kill_process_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_script(run: ScriptRun, on_start: Callable[[int], None] = lambda pid: None) -> TrainingOutcome:
    run.workdir.mkdir(parents=True, exist_ok=True)
    (run.workdir / ".tmp").mkdir(exist_ok=True)
    stdout_path = run.workdir.parent / f"{run.workdir.name}.stdout.log"
    stderr_path = run.workdir.parent / f"{run.workdir.name}.stderr.log"
    started = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        if run.sandbox is not None:
            exit_code = _run_sandboxed(run, out, err, on_start)
        else:
            exit_code = _run_in_process_group(run, out, err, on_start)
    return TrainingOutcome(exit_code, time.monotonic() - started, stdout_path, stderr_path)


def _timed_out(run: ScriptRun) -> TrainingTimeout:
    return TrainingTimeout(
        f"training did not finish within {run.timeout_seconds:g} s; the script and all its processes were killed"
    )


def _run_in_process_group(run: ScriptRun, out: BinaryIO, err: BinaryIO, on_start: Callable[[int], None]) -> int:
    try:
        proc = subprocess.Popen(
            [str(run.python), "-u", str(run.script_path)],
            cwd=run.workdir,
            env=run.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=run.limits.apply if run.limits else None,
        )
    except OSError as exc:
        raise TrainingFailed(f"could not start the training script: {exc}") from exc
    on_start(proc.pid)
    try:
        return proc.wait(timeout=run.timeout_seconds)
    except subprocess.TimeoutExpired as exc:
        kill_process_group(proc.pid)
        proc.wait()
        raise _timed_out(run) from exc
    finally:
        # Children the script started (daemons, background jobs) die with its process group.
        kill_process_group(proc.pid)


def _run_sandboxed(run: ScriptRun, out: BinaryIO, err: BinaryIO, on_start: Callable[[int], None]) -> int:
    box = run.sandbox
    assert box is not None
    sandboxing.hand_over_workdir(run.workdir, box.uid, box.gid)
    read_fd, write_fd = os.pipe()
    try:
        try:
            proc = subprocess.Popen(
                sandboxing.command(box.isolate_network),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env=sandboxing.outer_environment(run.env.get("MLFLOW_RUN_ID")),
                start_new_session=True,
                pass_fds=(write_fd,),
            )
        except OSError as exc:
            raise TrainingSandboxFailed(f"could not start the training sandbox: {exc}") from exc
        status_fd = write_fd  # pass_fds keeps the number in the child
        os.close(write_fd)
        write_fd = -1
        try:
            on_start(proc.pid)
            limits: dict[str, int | tuple[int, int]] = dict(run.limits.as_dict()) if run.limits else {}
            limits["RLIMIT_NPROC"] = box.max_processes
            config = sandboxing.init_config(
                box,
                argv=[str(run.python), "-u", str(run.script_path)],
                env=run.env,
                cwd=run.workdir,
                limits=limits,
                status_fd=status_fd,
            )
            assert proc.stdin is not None  # Popen was given stdin=PIPE
            try:
                proc.stdin.write(config)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the init died before reading; its status (or its absence) tells below
            proc.wait(timeout=run.timeout_seconds)
        except subprocess.TimeoutExpired as exc:
            _kill_sandbox(proc)
            raise _timed_out(run) from exc
        except BaseException:
            _kill_sandbox(proc)  # whatever went wrong here, the sandbox must not outlive this call
            raise
        finally:
            kill_process_group(proc.pid)
        report = sandboxing.read_all(read_fd).strip()
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    if report.startswith("exit "):
        return os.waitstatus_to_exitcode(int(report.split()[1]))
    if report.startswith("error "):
        raise TrainingSandboxFailed(f"could not set up the training sandbox: {report.removeprefix('error ')}")
    tail = " ".join(tail_lines(Path(err.name), 5))
    raise TrainingSandboxFailed(
        "the training sandbox ended without reporting the script's exit "
        f"(unshare exit code {proc.returncode}): {tail or 'no output'}"
    )


def _kill_sandbox(proc: subprocess.Popen[bytes]) -> None:
    """Kill the namespace's init first: the kernel then kills everything in the namespace before the
    init is gone, and unshare (which waits for it) returns only after that."""
    for pid in _children(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    kill_process_group(proc.pid)
    proc.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def tail_lines(path: Path, count: int) -> list[str]:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]
