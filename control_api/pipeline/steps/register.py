"""Step ``register``: register the run's one logged model as a new version of ``model_name``.

Re-running it for the same run finds the version created earlier (by run id) instead of adding one.
"""

from __future__ import annotations

import time

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.errors import TerminalError
from control_api.pipeline.outputs import MODEL_SOURCE, MODEL_URI, MODEL_VERSION, POLL_DEADLINE, RUN_ID
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.provider import Provider

READY_TIMEOUT_SECONDS = 300.0


class RegisterStep:
    name = "register"
    status_label = "registering"
    max_attempts = 3

    def __init__(self, mlflow: Provider[MlflowGateway]) -> None:
        self.mlflow = mlflow

    def discard(self, ctx: StepContext) -> None:
        """A cancelled deploy leaves no version behind: the one it registered for its run is deleted
        (found by run id, so also one registered by an attempt the cancel interrupted)."""
        run_id = ctx.outputs.get(RUN_ID)
        if not run_id:
            return
        gateway = self.mlflow()
        model_name = ctx.request["model_name"]
        version = gateway.find_version_for_run(model_name, run_id)
        if version is not None:
            gateway.delete_version(model_name, str(version.version))
            ctx.log(f"deleted {model_name} version {version.version}: the deploy was cancelled")

    def run(self, ctx: StepContext) -> StepResult | NotYet:
        gateway = self.mlflow()
        model_name = ctx.request["model_name"]
        run_id = ctx.outputs[RUN_ID]
        version = gateway.find_version_for_run(model_name, run_id)
        if version is not None:
            if "poll_deadline" not in ctx.outputs:
                ctx.log(f"version {version.version} of {model_name} already registered for run {run_id}")
        else:
            version = gateway.register(
                model_name,
                ctx.outputs[MODEL_SOURCE],
                run_id,
                tags={"mlops.deployment_id": ctx.deployment_id},
                description=f"registered by deployment {ctx.deployment_id}",
            )
        number = str(version.version)
        # A registry whose storage copies the model asynchronously keeps the version PENDING_REGISTRATION
        # for a while: look again later instead of holding a worker.
        current = gateway.get_version(model_name, number)
        if current.status == "FAILED_REGISTRATION":
            raise TerminalError(
                f"MLflow failed to register {model_name} version {number}: {current.status_message}",
                code="registration_failed",
            )
        if current.status != "READY":
            now = time.time()
            deadline = float(ctx.outputs.get(POLL_DEADLINE) or now + READY_TIMEOUT_SECONDS)
            if now >= deadline:
                raise TerminalError(
                    f"{model_name} version {number} is still {current.status} after {READY_TIMEOUT_SECONDS:.0f} s",
                    code="registration_timeout",
                )
            return NotYet(1.0, f"{model_name} version {number} is {current.status}", {POLL_DEADLINE: deadline})
        gateway.set_version_tag(model_name, number, "mlops.deployment_id", ctx.deployment_id)
        return StepResult(
            {
                MODEL_VERSION: number,
                MODEL_URI: f"models:/{model_name}/{number}",
            },
            f"registered {model_name} version {number}",
        )
