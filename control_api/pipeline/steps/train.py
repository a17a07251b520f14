"""Step ``train``: run the user's script in a sandboxed subprocess under MLflow tracking.

The script reaches MLflow only through the run's tracking door (``training/tracking_door.py``): the
service creates the experiment and the run, and the script may log to that run only.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.errors import MlopsError, NoModelLogged, SeveralModelsLogged, TrainingFailed, TrainingTimeout
from control_api.pipeline.outputs import (
    EXPERIMENT_ID,
    EXPERIMENT_NAME,
    MODEL_SOURCE,
    RUN_ID,
    TRAIN_PGID,
    TRAINING_PACKAGES,
)
from control_api.pipeline.step import StepContext, StepResult
from control_api.provider import Provider
from control_api.training import sandbox as sandboxing
from control_api.training.environments import EnvironmentCache
from control_api.training.runner import (
    ResourceLimits,
    ScriptRun,
    build_environment,
    kill_process_group,
    run_script,
    tail_lines,
)
from control_api.training.sandbox import SandboxConfig
from control_api.training.tracking_door import OpenDoor, TrackingDoor, new_socket_dir, open_door


class TrainStep:
    name = "train"
    status_label = "training"
    max_attempts = 3

    def __init__(self, mlflow: Provider[MlflowGateway], environments: Provider[EnvironmentCache]) -> None:
        self.mlflow = mlflow
        self.environments = environments

    def run(self, ctx: StepContext) -> StepResult:
        request = ctx.request
        gateway = self.mlflow()
        settings = ctx.settings

        previous = self._resume(ctx)
        if previous is not None:
            return previous

        # Before anything is created: a required sandbox that cannot work here fails the deploy now.
        box_plan = sandboxing.plan(settings.training.sandbox)
        if box_plan.note:
            ctx.log(box_plan.note)

        env = self.environments().ensure(
            request.get("requirements") or [], embedded_store=gateway.is_embedded, log=ctx.log
        )
        ctx.raise_if_cancelled()  # preparing the environment can take minutes
        experiment_name, experiment_id, run_id = create_deploy_run(gateway, ctx, source_type="LOCAL")
        # The serving image installs the same versions (build step), also after a resumed attempt.
        ctx.save_progress(
            run_id=run_id, experiment_id=experiment_id, experiment_name=experiment_name, training_packages=env.packages
        )
        ctx.log(f"MLflow run {run_id} in experiment {experiment_name!r}")

        workdir = settings.data_path / "work" / ctx.deployment_id / run_id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        script_name = _safe_script_name(request.get("script_name") or "train.py")
        script_path = workdir / script_name
        script_path.write_bytes(base64.b64decode(request["script_content"]))

        limits = ResourceLimits(
            # RLIMIT_CPU counts the CPU time of all threads: a script using every core for the whole
            # wall-clock limit stays within it; a spinning one still dies at the timeout.
            cpu_seconds=int(settings.training.timeout_seconds * (os.cpu_count() or 1)) + 5,
            memory_bytes=settings.training.max_memory_bytes,
            file_bytes=settings.training.max_file_bytes,
            open_files=settings.training.max_open_files,
            processes=settings.training.max_processes if box_plan.enabled else None,
            workdir_bytes=settings.training.workdir_bytes if box_plan.enabled else None,
        )
        door = TrackingDoor(gateway, run_id, experiment_id, max_artifact_bytes=settings.training.max_file_bytes)
        try:
            with self._sandbox(ctx, box_plan.enabled, env.path, workdir, run_id, door) as (box, opened):
                script_env = build_environment(
                    venv=env.path,
                    workdir=workdir,
                    # In the sandbox its init replaces the URIs with its forwarded port (see sandbox_init.py).
                    tracking_uri=opened.url or "http://127.0.0.1",
                    registry_uri=opened.url or "http://127.0.0.1",
                    tracking_token=opened.token,
                    run_id=run_id,
                    experiment_id=experiment_id,
                    user_env=request.get("environment_vars") or {},
                )
                outcome = run_script(
                    ScriptRun(
                        env.python,
                        script_path,
                        workdir,
                        script_env,
                        settings.training.timeout_seconds,
                        limits=limits,
                        sandbox=box,
                    ),
                    on_start=lambda pid: self._started(ctx, pid),
                )
        except TrainingTimeout as exc:
            self._log_output(ctx, workdir)
            with suppress(MlopsError):  # the timeout is the news, not MLflow being down
                gateway.set_run_status(run_id, "FAILED")
            exc.details = {RUN_ID: run_id}
            raise
        finally:
            # What the script wrote went to MLflow through the door; its output logs sit beside the folder.
            shutil.rmtree(workdir, ignore_errors=True)
        try:
            self._keep_logs(ctx, run_id, outcome.stdout_path, outcome.stderr_path)
        finally:
            for line in tail_lines(outcome.stdout_path, 10) + tail_lines(outcome.stderr_path, 20):
                ctx.log(line)

        if outcome.exit_code != 0:
            gateway.set_run_status(run_id, "FAILED")
            reason = _signal_reason(outcome.exit_code)
            stderr_lines = tail_lines(outcome.stderr_path, 15)
            limit = _limit_reached(outcome.exit_code, stderr_lines, limits)
            stderr_tail = "\n".join(stderr_lines) or "(no output on stderr)"
            raise TrainingFailed(
                f"the training script exited with code {outcome.exit_code}{reason}{': ' + limit if limit else ''}. "
                f"Last lines of stderr:\n{stderr_tail}",
                details={RUN_ID: run_id, "exit_code": outcome.exit_code, **({"limit": limit} if limit else {})},
            )
        model, outputs = finish_run(gateway, run_id, experiment_id, experiment_name)
        return StepResult(
            {
                **outputs,
                "training_seconds": round(outcome.duration_seconds, 3),
                "training_environment_reused": env.reused,
                TRAINING_PACKAGES: env.packages,
            },
            f"run {run_id} logged model {model.name!r} in {outcome.duration_seconds:.1f} s",
        )

    @staticmethod
    def _started(ctx: StepContext, pgid: int) -> None:
        """Record the script's process group, so a cancel or a restart can kill it; a cancel that
        came before it was recorded found nothing to kill, so the group is killed here."""
        ctx.save_progress(train_pgid=pgid)
        if ctx.cancelled():
            kill_process_group(pgid)

    def cancel(self, deployment_id: str, outputs: dict[str, Any]) -> None:
        """Stop the training in flight: kill the script's process group (the run is closed by
        ``discard``). A training backend that runs elsewhere (a Kubernetes Job) stops its work here,
        through its own ``cancel(deployment_id)``."""
        pgid, run_id = outputs.get(TRAIN_PGID), outputs.get(RUN_ID)
        if pgid and run_id and _is_our_training_process(int(pgid), run_id):
            kill_process_group(int(pgid))

    def discard(self, ctx: StepContext) -> None:
        """The cancelled deploy's run stays in its experiment as history, ``KILLED`` if it was still
        running, and tagged ``mlops.cancelled`` so nobody mistakes it for a served model's run."""
        self.cancel(ctx.deployment_id, ctx.outputs)  # a training left behind by a crash mid-cancel
        run_id = ctx.outputs.get(RUN_ID)
        if run_id:
            close_cancelled_run(self.mlflow(), run_id)
            ctx.log(f"run {run_id} closed: the deploy was cancelled")

    def _resume(self, ctx: StepContext) -> StepResult | None:
        """Pick up an attempt that a crash or restart interrupted."""
        run_id = ctx.outputs.get(RUN_ID)
        if not run_id:
            return None
        gateway = self.mlflow()
        pgid = ctx.outputs.get(TRAIN_PGID)
        if pgid and _is_our_training_process(int(pgid), run_id):
            kill_process_group(int(pgid))
        run = gateway.get_run(run_id)
        models = gateway.logged_models_of_run(run_id, [ctx.outputs.get(EXPERIMENT_ID) or run.info.experiment_id])
        if run.info.status == "FINISHED" and len(models) == 1:
            ctx.log(f"resuming: run {run_id} had already finished and logged its model")
            # The attempt may have died (or lost MLflow) before keeping the script's output; it is
            # still on disk. Uploading again replaces the same two artifacts.
            workdir = ctx.settings.data_path / "work" / ctx.deployment_id / run_id
            self._keep_logs(
                ctx, run_id, workdir.parent / f"{run_id}.stdout.log", workdir.parent / f"{run_id}.stderr.log"
            )
            return StepResult(
                {
                    RUN_ID: run_id,
                    EXPERIMENT_ID: run.info.experiment_id,
                    EXPERIMENT_NAME: ctx.outputs.get(EXPERIMENT_NAME),
                    "logged_model_id": models[0].model_id,
                    "logged_model_name": models[0].name,
                    MODEL_SOURCE: f"models:/{models[0].model_id}",
                    TRAINING_PACKAGES: ctx.outputs.get(TRAINING_PACKAGES),
                }
            )
        if run.info.status == "RUNNING":
            gateway.set_run_status(run_id, "KILLED")
        ctx.log(f"resuming: run {run_id} was interrupted (status {run.info.status}); training again in a new run")
        ctx.save_progress(run_id=None, train_pgid=None, interrupted_run_id=run_id)
        return None

    @contextmanager
    def _sandbox(
        self, ctx: StepContext, enabled: bool, venv: Path, workdir: Path, run_id: str, door: TrackingDoor
    ) -> Iterator[tuple[SandboxConfig | None, OpenDoor]]:
        """Lease a uid, open the run's tracking door, and describe what the script may see. The door
        closes (its token dies) when the block ends."""
        settings = ctx.settings
        if not enabled:
            with open_door(door, socket_dir=None) as opened:
                yield None, opened
            return
        training = settings.training
        isolate = training.sandbox_network != "host"
        prefix = sandboxing.interpreter_prefix(venv)
        root = settings.data_path / "sandbox" / "root"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (
            sandboxing.lease_uid(
                training.sandbox_uid_first, training.sandbox_uid_count, sandboxing.lock_dir(settings.data_path)
            ) as uid,
            open_door(door, socket_dir=new_socket_dir(), owner=(uid, training.sandbox_gid)) as opened,
        ):
            network = "loopback only" if isolate else "host network"
            ctx.log(
                f"sandbox: uid {uid}, gid {training.sandbox_gid}, {network}, MLflow through the run's tracking door, "
                f"at most {training.max_processes} processes, "
                f"{_size(training.max_memory_bytes)} address space, {_size(training.max_file_bytes)} per file"
            )
            assert opened.socket_path is not None
            yield (
                SandboxConfig(
                    uid=uid,
                    gid=training.sandbox_gid,
                    root=root,
                    read_only=tuple(p for p in (venv, prefix) if p is not None),
                    read_write=(workdir, opened.socket_path.parent),
                    isolate_network=isolate,
                    max_processes=training.max_processes,
                    door_socket=opened.socket_path,
                    workdir_bytes=training.workdir_bytes,
                ),
                opened,
            )

    @staticmethod
    def _log_output(ctx: StepContext, workdir: Path) -> None:
        for path, count in (
            (workdir.parent / f"{workdir.name}.stdout.log", 10),
            (workdir.parent / f"{workdir.name}.stderr.log", 20),
        ):
            for line in tail_lines(path, count):
                ctx.log(line)

    def _keep_logs(self, ctx: StepContext, run_id: str, *paths: Path) -> None:
        from control_api.redaction import redact_file

        for path in paths:
            if path.exists():
                redact_file(path)  # a script may print its environment: MLflow's URI can carry a password
                self.mlflow().log_artifact(run_id, path, "logs")

    @staticmethod
    def _check_models(gateway: MlflowGateway, run_id: str, models: list[Any]) -> None:
        if not models:
            gateway.set_run_status(run_id, "FAILED")
            raise NoModelLogged(
                "the script finished but logged no model. Log exactly one inside the run, for example "
                'mlflow.sklearn.log_model(model, name="model")',
                details={RUN_ID: run_id},
            )
        if len(models) > 1:
            gateway.set_run_status(run_id, "FAILED")
            names = sorted(m.name for m in models)
            raise SeveralModelsLogged(
                f"the script logged {len(models)} models ({', '.join(names)}); a deploy serves exactly one. "
                "Log only the model to serve, or log the others as plain artifacts.",
                details={RUN_ID: run_id, "models": names},
            )


def _safe_script_name(name: str) -> str:
    base = os.path.basename(name)
    return base if re.fullmatch(r"[A-Za-z0-9_.-]+\.py", base) else "train.py"


def _is_our_training_process(pgid: int, run_id: str) -> bool:
    """Only kill a leftover process group if it really is the interrupted training (pids get reused)."""
    try:
        environ = Path(f"/proc/{pgid}/environ").read_bytes()
    except OSError:
        return False
    return f"MLFLOW_RUN_ID={run_id}".encode() in environ


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"


def _limit_reached(exit_code: int, stderr_lines: list[str], limits: ResourceLimits) -> str | None:
    """Name the limit a failed script ran into, from how it died or the error it printed last."""
    text = "\n".join(stderr_lines[-6:])
    if exit_code == -signal.SIGXCPU:
        return f"it reached the CPU time limit ({limits.cpu_seconds} CPU seconds)"
    if exit_code == -signal.SIGXFSZ or "File too large" in text:
        return (
            f"it reached the file size limit: no file may exceed {_size(limits.file_bytes)} "
            "(MLOPS_TRAINING__MAX_FILE_BYTES)"
        )
    if "No space left on device" in text and limits.workdir_bytes is not None:
        return f"it filled its working folder: at most {_size(limits.workdir_bytes)} (MLOPS_TRAINING__WORKDIR_BYTES)"
    if re.search(r"MemoryError|Cannot allocate memory|std::bad_alloc|Unable to allocate", text):
        return (
            f"it ran out of memory: the limit is {_size(limits.memory_bytes)} of address space "
            "(MLOPS_TRAINING__MAX_MEMORY_BYTES)"
        )
    if re.search(r"Too many open files", text):
        return (
            f"it reached the open file limit: at most {limits.open_files} open files (MLOPS_TRAINING__MAX_OPEN_FILES)"
        )
    if limits.processes is not None and re.search(
        r"Resource temporarily unavailable|can't start new thread|fork: retry", text
    ):
        return (
            f"it reached the process limit: at most {limits.processes} processes and threads "
            "(MLOPS_TRAINING__MAX_PROCESSES)"
        )
    return None


def _signal_reason(exit_code: int) -> str:
    if exit_code >= 0:
        return ""
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        return f" (killed by signal {-exit_code})"
    why = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed", "SIGSEGV": "crashed"}.get(
        name
    )
    return f" (killed by {name}{': ' + why if why else ''})"


def create_deploy_run(
    gateway: MlflowGateway, ctx: StepContext, *, source_type: str, extra_tags: dict[str, str] | None = None
) -> tuple[str, str, str]:
    """The deploy's MLflow run in its experiment (the request's, else the model's name), tagged with
    the deploy's identity and the request's tags: experiment name, experiment id and run id."""
    request = ctx.request
    experiment_name = request.get("experiment_name") or request["model_name"]
    experiment_id = gateway.ensure_experiment(experiment_name)
    tags = {
        **(request.get("tags") or {}),
        "mlops.deployment_id": ctx.deployment_id,
        "mlops.model_name": request["model_name"],
        "mlops.requested_by": ctx.deployment.requested_by,
        **(extra_tags or {}),
        "mlflow.source.name": request.get("script_name") or "train.py",
        "mlflow.source.type": source_type,
        "mlflow.user": ctx.deployment.requested_by,
    }
    run_id = gateway.create_run(experiment_id, f"{request['model_name']}-{ctx.deployment_id[:8]}", tags)
    return experiment_name, experiment_id, run_id


def finish_run(
    gateway: MlflowGateway, run_id: str, experiment_id: str, experiment_name: str
) -> tuple[Any, dict[str, Any]]:
    """A training that ended well: its one logged model, the run marked finished, and the outputs every
    train step reports."""
    models = gateway.logged_models_of_run(run_id, [experiment_id])
    TrainStep._check_models(gateway, run_id, models)
    if gateway.get_run(run_id).info.status == "RUNNING":
        gateway.set_run_status(run_id, "FINISHED")
    model = models[0]
    return model, {
        RUN_ID: run_id,
        EXPERIMENT_ID: experiment_id,
        EXPERIMENT_NAME: experiment_name,
        "logged_model_id": model.model_id,
        "logged_model_name": model.name,
        MODEL_SOURCE: f"models:/{model.model_id}",
    }


def close_cancelled_run(gateway: MlflowGateway, run_id: str) -> None:
    """A cancelled deploy's run stays in its experiment as history, ``KILLED`` if it was still running,
    and tagged ``mlops.cancelled`` so nobody mistakes it for a served model's run."""
    if gateway.get_run(run_id).info.status == "RUNNING":
        gateway.set_run_status(run_id, "KILLED")
    gateway.set_run_tag(run_id, "mlops.cancelled", "true")
