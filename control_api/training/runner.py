"""Runs one training script in a subprocess under MLflow tracking.

The script gets a fresh working directory and a cleared environment: only its declared variables and
MLflow's. It runs in its own session (process group), so a timeout kills it and every child it started,
detached ones included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from control_api.errors import TrainingFailed, TrainingTimeout

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

    def apply(self) -> None:
        """Runs in the child between fork and exec: the limits bind the script and its children."""
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class ScriptRun:
    python: Path
    script_path: Path
    workdir: Path
    env: dict[str, str]
    timeout_seconds: float
    limits: ResourceLimits | None = None


def build_environment(
    *,
    venv: Path,
    workdir: Path,
    tracking_uri: str,
    registry_uri: str,
    run_id: str,
    experiment_id: str,
    user_env: dict[str, str],
) -> dict[str, str]:
    env = dict(BASE_ENV)
    env.update(user_env)
    # Service-controlled variables go last so a script's environment_vars cannot redirect tracking.
    env.update(
        {
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir / ".tmp"),
            "VIRTUAL_ENV": str(venv),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_REGISTRY_URI": registry_uri,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLOPS_SERVICE_RUN": "1",
        }
    )
    return env


def kill_process_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_script(run: ScriptRun, on_start: Callable[[int], None] = lambda pid: None) -> TrainingOutcome:
    run.workdir.mkdir(parents=True, exist_ok=True)
    (run.workdir / ".tmp").mkdir(exist_ok=True)
    stdout_path = run.workdir.parent / f"{run.workdir.name}.stdout.log"
    stderr_path = run.workdir.parent / f"{run.workdir.name}.stderr.log"
    started = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
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
            exit_code = proc.wait(timeout=run.timeout_seconds)
        except subprocess.TimeoutExpired:
            kill_process_group(proc.pid)
            proc.wait()
            raise TrainingTimeout(
                f"training did not finish within {run.timeout_seconds:g} s; the script and all its processes were killed"
            )
        finally:
            # Children the script detached (daemons, background jobs) die with its process group.
            kill_process_group(proc.pid)
    return TrainingOutcome(exit_code, time.monotonic() - started, stdout_path, stderr_path)


def tail_lines(path: Path, count: int) -> list[str]:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]
