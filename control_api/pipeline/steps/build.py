"""Step ``build``: the serving image = cached runtime layer + the registered model's files."""

from __future__ import annotations

import shutil

from control_api.adapters.image_builder.base import ImageBuilder, ModelBundle
from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.pipeline.outputs import (
    IMAGE_REUSED_FROM,
    IMAGE_URI,
    LOCAL_IMAGE,
    MODEL_VERSION,
    RUN_ID,
    TRAINING_PACKAGES,
)
from control_api.pipeline.step import StepContext, StepResult
from control_api.provider import Provider
from control_api.redaction import url_without_credentials


class BuildStep:
    name = "build"
    status_label = "building"
    max_attempts = 2

    def __init__(self, mlflow: Provider[MlflowGateway], image_builder: Provider[ImageBuilder]) -> None:
        self.mlflow = mlflow
        self.image_builder = image_builder

    def run(self, ctx: StepContext) -> StepResult:
        if ctx.outputs.get(IMAGE_REUSED_FROM):
            return StepResult({}, f"image {ctx.outputs[IMAGE_URI]} reused: nothing to build")
        gateway = self.mlflow()
        model_name = ctx.request["model_name"]
        version = ctx.outputs[MODEL_VERSION]
        model_dir = ctx.settings.data_path / "work" / ctx.deployment_id / "model"
        shutil.rmtree(model_dir, ignore_errors=True)
        local_dir = gateway.download_version(model_name, version, model_dir)
        ctx.log(f"downloaded {model_name} v{version} to {local_dir}")
        bundle = ModelBundle(
            model_name=model_name,
            model_version=version,
            run_id=ctx.outputs[RUN_ID],
            model_dir=local_dir,
            model_uri=f"models:/{model_name}/{version}",
            # Image labels are readable by everyone who can pull the image.
            mlflow_tracking_uri=url_without_credentials(gateway.tracking_uri),
            deployment_id=ctx.deployment_id,
            training_packages=ctx.outputs.get(TRAINING_PACKAGES),
        )
        built = self.image_builder().build(bundle, lambda line: _log_unless_cancelled(ctx, line))
        shutil.rmtree(model_dir, ignore_errors=True)
        reuse = "reused" if built.runtime_cache_hit else "built"
        return StepResult(
            {
                LOCAL_IMAGE: built.reference,
                "local_image_id": built.image_id,
                "runtime_image": built.runtime_reference,
                "runtime_cache_hit": built.runtime_cache_hit,
            },
            f"image {built.reference}; runtime layer {built.runtime_reference} {reuse}",
        )


def _log_unless_cancelled(ctx: StepContext, line: str) -> None:
    """The build's log sink, and its cancellation point: raising here leaves the builder's output
    loop, which stops the build (the Docker Engine cancels a build whose client went away; the
    buildah backend terminates its child process)."""
    ctx.raise_if_cancelled()
    ctx.log(line)
