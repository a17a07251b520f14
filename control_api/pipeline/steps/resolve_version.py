"""Step ``resolve`` of a version deploy: which registered version to serve, and whether an image of it
already exists.

A version deploy serves a version of the model registry without training. Its image is the one an
earlier deploy of that version pushed (found in the model's git history by its ``Model-Version`` and
``Image`` trailers, skipping deploys that were cancelled, whose tags are deleted); when there is none,
the build and push steps that follow make one from the registered model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.errors import InvalidRequestError
from control_api.pipeline.outputs import (
    IMAGE_REUSED_FROM,
    IMAGE_URI,
    MODEL_SOURCE,
    MODEL_URI,
    MODEL_VERSION,
    RUN_ID,
)
from control_api.pipeline.step import StepContext, StepResult
from control_api.pipeline.steps.commit import CANCELS_TRAILER
from control_api.provider import Provider
from renderer.names import APPS_DIR

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo
    from control_api.adapters.gitops.types import CommitInfo


def image_of_version(history: list[CommitInfo], version: str) -> CommitInfo | None:
    """The newest commit that served ``version`` with an image that still exists (newest first)."""
    cancelled = {c.trailers[CANCELS_TRAILER] for c in history if c.trailers.get(CANCELS_TRAILER)}
    return next(
        (
            c
            for c in history
            if c.trailers.get("Model-Version") == version
            and c.trailers.get("Image")
            and c.trailers.get("Action") != "undeploy"
            and c.trailers.get("Deployment-Id") not in cancelled
        ),
        None,
    )


class ResolveVersionStep:
    name = "resolve"
    status_label = "resolving"
    max_attempts = 3

    def __init__(self, mlflow: Provider[MlflowGateway], gitops: Provider[GitOpsRepo]) -> None:
        self.mlflow = mlflow
        self.gitops = gitops

    def run(self, ctx: StepContext) -> StepResult:
        model_name = ctx.request["model_name"]
        version = str(ctx.request["version"])
        found = self.mlflow().get_version(model_name, version)  # a missing version is a 404
        if not found.run_id:
            raise InvalidRequestError(
                f"{model_name} version {version} has no MLflow run; only versions logged from a run can be served",
                code="version_without_run",
                details={"model_name": model_name, "version": version},
            )
        outputs: dict[str, object] = {
            MODEL_VERSION: version,
            RUN_ID: found.run_id,
            MODEL_URI: f"models:/{model_name}/{version}",
            MODEL_SOURCE: found.source,
        }
        # Any endpoint's deploy of this version pushed an image that serves it, in any namespace.
        history = self.gitops().history(path_prefix=APPS_DIR, trailer_filter={"Model-Name": model_name}, limit=500)
        earlier = image_of_version(history, version)
        if earlier is None:
            return StepResult(outputs, f"{model_name} v{version} (run {found.run_id}); no image yet: building one")
        outputs[IMAGE_URI] = earlier.trailers["Image"]
        outputs[IMAGE_REUSED_FROM] = earlier.sha
        return StepResult(
            outputs, f"{model_name} v{version}: serving image {earlier.trailers['Image']} of commit {earlier.sha[:12]}"
        )
