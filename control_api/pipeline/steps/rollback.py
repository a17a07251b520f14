"""Steps for rollback and undeploy: a revert-style commit (or a removal commit), then the usual sync.

Rollback restores the model's overlay exactly as it was in the deploy commit of the chosen version,
so the new commit's diff is the inverse of the change being undone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.adapters.gitops.types import CommitInfo, CommitRequest
from control_api.errors import ConflictError, NotFoundError
from control_api.pipeline.outputs import (
    COMMIT,
    COMMIT_CHANGED,
    DEPLOYMENT_URL,
    EXTERNAL_IP,
    IMAGE_URI,
    MODEL_VERSION,
    RUN_ID,
    TARGET,
)
from control_api.pipeline.step import StepContext, StepResult
from control_api.pipeline.steps.commit import app_of, earlier_commit_of
from control_api.provider import Provider
from control_api.targets.base import AppRef, DeploymentTarget, app_ref

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo


def deploy_history(
    gitops: GitOpsRepo, namespace: str, model_name: str, limit: int = 200, *, endpoint: str | None = None
) -> tuple[AppRef, list[CommitInfo]]:
    """The app of the model's endpoint (its default one when ``endpoint`` is None) and the model's
    deploy, rollback and undeploy commits there on the branch, newest first."""
    app = app_ref(namespace, model_name, endpoint)
    return app, gitops.history(path_prefix=app.path, trailer_filter={"Model-Name": model_name}, limit=limit)


def _where(model_name: str, namespace: str, endpoint: str | None) -> str:
    named = endpoint and endpoint != model_name
    return f"endpoint {endpoint} of {namespace}" if named else namespace


def require_deployed(history: list[CommitInfo], model_name: str, namespace: str, endpoint: str | None = None) -> None:
    """Raise 404 unless the model's newest commit in ``history`` (newest first) leaves it deployed."""
    where = _where(model_name, namespace, endpoint)
    if not history:
        raise NotFoundError(f"{model_name} has never been deployed to {where}", code="model_not_deployed")
    if history[0].trailers.get("Action") == "undeploy":
        raise NotFoundError(f"{model_name} is not deployed in {where}; deploy it first", code="model_not_deployed")


def rollback_target(
    history: list[CommitInfo], model_name: str, namespace: str, wanted: str | None, endpoint: str | None = None
) -> CommitInfo:
    """The commit whose overlay a rollback restores: version ``wanted``, or the one before the current.

    The API asks before it creates anything, and the commit step asks again on the branch as it is then.
    """
    require_deployed(history, model_name, namespace, endpoint)
    current_version = history[0].trailers.get("Model-Version")
    if wanted:
        target = next(
            (c for c in history if c.trailers.get("Model-Version") == str(wanted) and _restorable(c)),
            None,
        )
        if target is None:
            raise NotFoundError(
                f"version {wanted} of {model_name} was never deployed to {_where(model_name, namespace, endpoint)}",
                code="version_not_deployed",
            )
        return target
    target = next(
        (c for c in history[1:] if c.trailers.get("Model-Version") not in (None, current_version) and _restorable(c)),
        None,
    )
    if target is None:
        raise ConflictError(f"{model_name} has no earlier version to roll back to", code="no_previous_version")
    return target


def _restorable(commit: CommitInfo) -> bool:
    """Whether a rollback may restore the endpoint as this commit left it: a deploy, promotion or
    rollback. Not an undeploy (nothing to restore), and not a canary step, which ran a second version
    beside the one its ``Model-Version`` names."""
    return commit.trailers.get("Action") not in ("undeploy", "canary")


class RollbackCommitStep:
    name = "commit"
    status_label = "committing"
    max_attempts = 3

    def __init__(self, gitops: Provider[GitOpsRepo]) -> None:
        self.gitops = gitops

    def run(self, ctx: StepContext) -> StepResult:
        model_name = ctx.deployment.model_name
        namespace = ctx.deployment.namespace
        endpoint = ctx.deployment.endpoint
        gitops = self.gitops()
        app, history = deploy_history(gitops, namespace, model_name, endpoint=endpoint)
        if not history:
            require_deployed(history, model_name, namespace, endpoint)  # raises: never deployed
        index = next((i for i, c in enumerate(history) if c.trailers.get("Deployment-Id") == ctx.deployment_id), None)
        if index is not None:
            mine = history[index]
            replaced = history[index + 1].trailers.get("Model-Version") if index + 1 < len(history) else None
            # A re-run after a crash that followed the push: choosing again would see this very commit
            # as the current state and roll "back" to the version it replaced.
            ctx.log(f"rollback commit {mine.sha[:12]} of this deployment is already on the branch")
            return StepResult(
                {
                    COMMIT: mine.sha,
                    COMMIT_CHANGED: True,
                    MODEL_VERSION: mine.trailers.get("Model-Version"),
                    RUN_ID: mine.trailers.get("Run-Id"),
                    IMAGE_URI: mine.trailers.get("Image"),
                    "rolled_back_from": replaced,
                    TARGET: ctx.settings.target.kind,
                },
                (f"rollback to v{mine.trailers.get('Model-Version')} at {mine.sha[:12]} (found after a restart)"),
            )
        current_version = history[0].trailers.get("Model-Version")
        target = rollback_target(history, model_name, namespace, ctx.request.get("version"), endpoint)
        files = gitops.read_files(target.sha, app.path)
        version = target.trailers["Model-Version"]
        result = gitops.commit(
            CommitRequest(
                files=files,
                replace_dirs=(app.path,),
                delete_paths=(),
                subject=f"rollback {model_name} to v{version}{app.at_endpoint}",
                body=(
                    f"Restore {app.path} as of {target.sha[:12]} ({target.subject}).\n\n"
                    f"This reverts the deployed state from v{current_version} to v{version}."
                ),
                trailers={
                    **app.trailers(),
                    "Model-Version": version,
                    "Run-Id": target.trailers.get("Run-Id", ""),
                    "Image": target.trailers.get("Image", ""),
                    "Deployment-Id": ctx.deployment_id,
                    "Requested-By": ctx.deployment.requested_by,
                    "Action": "rollback",
                    "Reverts-To": target.sha,
                },
            )
        )
        return StepResult(
            {
                COMMIT: result.sha,
                COMMIT_CHANGED: result.changed,
                MODEL_VERSION: version,
                RUN_ID: target.trailers.get("Run-Id"),
                IMAGE_URI: target.trailers.get("Image"),
                "rolled_back_from": current_version,
                TARGET: ctx.settings.target.kind,
            },
            f"rollback to v{version} at {result.sha[:12]}",
        )


class UndeployCommitStep:
    name = "commit"
    status_label = "committing"
    max_attempts = 3

    def __init__(self, gitops: Provider[GitOpsRepo]) -> None:
        self.gitops = gitops

    def run(self, ctx: StepContext) -> StepResult:
        from renderer import application_file

        model_name = ctx.deployment.model_name
        app = app_of(ctx)
        earlier = earlier_commit_of(ctx, self.gitops(), self.name)
        if earlier is not None:
            return StepResult(
                {
                    COMMIT: earlier.sha,
                    COMMIT_CHANGED: True,
                    TARGET: ctx.settings.target.kind,
                },
                f"removed {app.path} at {earlier.sha[:12]} (found after a restart)",
            )
        result = self.gitops().commit(
            CommitRequest(
                files={},
                replace_dirs=(),
                delete_paths=(app.path, application_file(app.application)),
                subject=f"undeploy {model_name}{app.at_endpoint}",
                body=f"Remove {app.path}; Argo CD prunes its resources.",
                trailers={
                    **app.trailers(),
                    "Deployment-Id": ctx.deployment_id,
                    "Requested-By": ctx.deployment.requested_by,
                    "Action": "undeploy",
                },
            )
        )
        return StepResult(
            {
                COMMIT: result.sha,
                COMMIT_CHANGED: result.changed,
                TARGET: ctx.settings.target.kind,
            },
            f"removed {app.path} at {result.sha[:12]}",
        )


class PruneStep:
    name = "prune"
    status_label = "syncing"
    max_attempts = 3

    def __init__(self, target: Provider[DeploymentTarget]) -> None:
        self.target = target

    def run(self, ctx: StepContext) -> StepResult:
        app = app_of(ctx)
        self.target().remove(app, ctx.outputs[COMMIT], ctx.log)
        return StepResult({EXTERNAL_IP: None, DEPLOYMENT_URL: None}, f"{app.application} removed")
