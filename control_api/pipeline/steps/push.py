"""Step ``push``: push the model image to the registry and record it by digest."""

from __future__ import annotations

from control_api.adapters.registry.base import ImageRegistry
from control_api.pipeline.outputs import IMAGE_REUSED_FROM, IMAGE_URI, LOCAL_IMAGE, MODEL_VERSION
from control_api.pipeline.step import StepContext, StepResult
from control_api.provider import Provider


class PushStep:
    name = "push"
    status_label = "pushing"
    max_attempts = 3

    def __init__(self, registry: Provider[ImageRegistry]) -> None:
        self.registry = registry

    def run(self, ctx: StepContext) -> StepResult:
        if ctx.outputs.get(IMAGE_REUSED_FROM):
            return StepResult({}, f"image {ctx.outputs[IMAGE_URI]} reused: already in the registry")
        repository, tag = _destination(ctx)
        pushed = self.registry().push(ctx.outputs[LOCAL_IMAGE], repository, tag, ctx.log)
        return StepResult(
            {
                IMAGE_URI: pushed.uri,
                "image_digest": pushed.digest,
                "image_tag": f"{pushed.repository}:{pushed.tag}",
            },
            f"pushed {pushed.uri}",
        )

    def discard(self, ctx: StepContext) -> None:
        """A cancelled deploy leaves no tag without a version: the tag it pushed is deleted (an image
        it reused belongs to an earlier deploy and stays)."""
        if MODEL_VERSION not in ctx.outputs or ctx.outputs.get(IMAGE_REUSED_FROM):
            return
        repository, tag = _destination(ctx)
        if self.registry().delete_tag(repository, tag):
            ctx.log(f"deleted {repository}:{tag} from the registry: the deploy was cancelled")


def _destination(ctx: StepContext) -> tuple[str, str]:
    """The repository and tag this deploy pushes to. One tag per version and deployment: a retry of
    this deploy pushes the same content under the same tag (a no-op even with immutable tags);
    another deploy never collides with it."""
    settings = ctx.settings.registry
    model_name = ctx.request["model_name"]
    repository = f"{settings.repository_prefix}/{model_name}" if settings.repository_prefix else model_name
    return repository, f"v{ctx.outputs[MODEL_VERSION]}-{ctx.deployment_id[:12]}"
