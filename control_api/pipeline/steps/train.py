"""Step ``train``: run the user's script in a sandboxed subprocess under MLflow tracking."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from typing import Any

from control_api.errors import NoModelLogged, SeveralModelsLogged, TrainingFailed
from control_api.pipeline.step import StepContext
from control_api.training.runner import ResourceLimits, ScriptRun, build_environment, kill_process_group, run_script, tail_lines


class TrainStep:
    name = "train"
    status_label = "training"
    max_attempts = 3

    def run(self, ctx: StepContext) -> dict[str, Any]:
        request = ctx.request
        gateway = ctx.services.mlflow
        settings = ctx.settings

        previous = self._resume(ctx)
        if previous is not None:
            return previous

        env = ctx.services.environments.ensure(
            request.get("requirements") or [], embedded_store=gateway.is_embedded, log=ctx.log
        )
        experiment_name = request.get("experiment_name") or request["model_name"]
        experiment_id = gateway.ensure_experiment(experiment_name)
        tags = {
            **(request.get("tags") or {}),
            "mlops.deployment_id": ctx.deployment_id,
            "mlops.model_name": request["model_name"],
            "mlops.requested_by": ctx.deployment.requested_by,
            "mlflow.source.name": request.get("script_name") or "train.py",
            "mlflow.source.type": "LOCAL",
            "mlflow.user": ctx.deployment.requested_by,
        }
        run_id = gateway.create_run(experiment_id, f"{request['model_name']}-{ctx.deployment_id[:8]}", tags)
        ctx.save_progress(run_id=run_id, experiment_id=experiment_id, experiment_name=experiment_name)
        ctx.log(f"MLflow run {run_id} in experiment {experiment_name!r}")

        workdir = settings.data_path / "work" / ctx.deployment_id / run_id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        script_name = _safe_script_name(request.get("script_name") or "train.py")
        script_path = workdir / script_name
        script_path.write_bytes(base64.b64decode(request["script_content"]))

        script_env = build_environment(
            venv=env.path,
            workdir=workdir,
            tracking_uri=gateway.tracking_uri,
            registry_uri=gateway.registry_uri,
            run_id=run_id,
            experiment_id=experiment_id,
            user_env=request.get("environment_vars") or {},
        )
        outcome = run_script(
            ScriptRun(
                env.python, script_path, workdir, script_env, settings.training.timeout_seconds,
                limits=ResourceLimits(
                    cpu_seconds=int(settings.training.timeout_seconds) + 5,
                    memory_bytes=settings.training.max_memory_bytes,
                    file_bytes=settings.training.max_file_bytes,
                    open_files=settings.training.max_open_files,
                ),
            ),
            on_start=lambda pid: ctx.save_progress(train_pgid=pid),
        )
        try:
            self._keep_logs(ctx, run_id, outcome.stdout_path, outcome.stderr_path)
        finally:
            for line in tail_lines(outcome.stdout_path, 10) + tail_lines(outcome.stderr_path, 20):
                ctx.log(line)

        if outcome.exit_code != 0:
            gateway.set_run_status(run_id, "FAILED")
            reason = _signal_reason(outcome.exit_code)
            stderr_tail = "\n".join(tail_lines(outcome.stderr_path, 15)) or "(no output on stderr)"
            raise TrainingFailed(
                f"the training script exited with code {outcome.exit_code}{reason}. Last lines of stderr:\n{stderr_tail}",
                details={"run_id": run_id, "exit_code": outcome.exit_code},
            )
        models = gateway.logged_models_of_run(run_id, [experiment_id])
        self._check_models(gateway, run_id, models)
        if gateway.get_run(run_id).info.status == "RUNNING":
            gateway.set_run_status(run_id, "FINISHED")
        model = models[0]
        return {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "experiment_name": experiment_name,
            "logged_model_id": model.model_id,
            "logged_model_name": model.name,
            "model_source": f"models:/{model.model_id}",
            "training_seconds": round(outcome.duration_seconds, 3),
            "training_environment_reused": env.reused,
            "_message": f"run {run_id} logged model {model.name!r} in {outcome.duration_seconds:.1f} s",
        }

    def _resume(self, ctx: StepContext) -> dict[str, Any] | None:
        """Pick up an attempt that a crash or restart interrupted."""
        run_id = ctx.outputs.get("run_id")
        if not run_id:
            return None
        gateway = ctx.services.mlflow
        pgid = ctx.outputs.get("train_pgid")
        if pgid and _is_our_training_process(int(pgid), run_id):
            kill_process_group(int(pgid))
        run = gateway.get_run(run_id)
        models = gateway.logged_models_of_run(run_id, [ctx.outputs.get("experiment_id") or run.info.experiment_id])
        if run.info.status == "FINISHED" and len(models) == 1:
            ctx.log(f"resuming: run {run_id} had already finished and logged its model")
            return {
                "run_id": run_id,
                "experiment_id": run.info.experiment_id,
                "experiment_name": ctx.outputs.get("experiment_name"),
                "logged_model_id": models[0].model_id,
                "logged_model_name": models[0].name,
                "model_source": f"models:/{models[0].model_id}",
            }
        if run.info.status == "RUNNING":
            gateway.set_run_status(run_id, "KILLED")
        ctx.log(f"resuming: run {run_id} was interrupted (status {run.info.status}); training again in a new run")
        ctx.save_progress(run_id=None, train_pgid=None, interrupted_run_id=run_id)
        return None

    @staticmethod
    def _keep_logs(ctx: StepContext, run_id: str, *paths: Path) -> None:
        for path in paths:
            if path.exists():
                ctx.services.mlflow.log_artifact(run_id, path, "logs")

    @staticmethod
    def _check_models(gateway, run_id: str, models: list) -> None:
        if not models:
            gateway.set_run_status(run_id, "FAILED")
            raise NoModelLogged(
                "the script finished but logged no model. Log exactly one inside the run, for example "
                "mlflow.sklearn.log_model(model, name=\"model\")",
                details={"run_id": run_id},
            )
        if len(models) > 1:
            gateway.set_run_status(run_id, "FAILED")
            names = sorted(m.name for m in models)
            raise SeveralModelsLogged(
                f"the script logged {len(models)} models ({', '.join(names)}); a deploy serves exactly one. "
                "Log only the model to serve, or log the others as plain artifacts.",
                details={"run_id": run_id, "models": names},
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


def _signal_reason(exit_code: int) -> str:
    import signal

    if exit_code >= 0:
        return ""
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        return f" (killed by signal {-exit_code})"
    why = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed", "SIGSEGV": "crashed"}.get(name)
    return f" (killed by {name}{': ' + why if why else ''})"
