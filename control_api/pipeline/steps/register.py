"""Step ``register``: register the run's one logged model as a new version of ``model_name``.

Re-running it for the same run finds the version created earlier (by run id) instead of adding one.
"""

from __future__ import annotations

import time
from typing import Any

from control_api.errors import TerminalError
from control_api.pipeline.step import StepContext


class RegisterStep:
    name = "register"
    status_label = "registering"
    max_attempts = 3

    def run(self, ctx: StepContext) -> dict[str, Any]:
        gateway = ctx.services.mlflow
        model_name = ctx.request["model_name"]
        run_id = ctx.outputs["run_id"]
        version = gateway.find_version_for_run(model_name, run_id)
        if version is not None:
            ctx.log(f"version {version.version} of {model_name} already registered for run {run_id}")
        else:
            version = gateway.register(
                model_name,
                ctx.outputs["model_source"],
                run_id,
                tags={"mlops.deployment_id": ctx.deployment_id},
                description=f"registered by deployment {ctx.deployment_id}",
            )
        version = self._wait_ready(gateway, model_name, str(version.version))
        gateway.set_version_tag(model_name, str(version.version), "mlops.deployment_id", ctx.deployment_id)
        return {
            "model_version": str(version.version),
            "model_uri": f"models:/{model_name}/{version.version}",
            "_message": f"registered {model_name} version {version.version}",
        }

    @staticmethod
    def _wait_ready(gateway, name: str, version: str, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while True:
            mv = gateway.get_version(name, version)
            if mv.status == "READY":
                return mv
            if mv.status == "FAILED_REGISTRATION":
                raise TerminalError(f"MLflow failed to register {name} version {version}: {mv.status_message}", code="registration_failed")
            if time.monotonic() > deadline:
                raise TerminalError(f"{name} version {version} is still {mv.status} after {timeout:.0f} s", code="registration_timeout")
            time.sleep(1)
