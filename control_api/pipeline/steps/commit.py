"""Step ``commit``: render the model's Kustomize overlay and commit it to the GitOps repo.

One deploy is one commit with a readable subject and machine-readable trailers. Identical bytes make
no commit, so a retried deploy never adds a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from control_api.adapters.gitops.types import CommitInfo, CommitRequest, CommitResult
from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.deployment_spec import spec_fields
from control_api.errors import ConflictError, InvalidRequestError
from control_api.journal.records import StepStatus
from control_api.pipeline.outputs import (
    APPLICATION,
    COMMIT,
    COMMIT_CHANGED,
    GITOPS_PATH,
    IMAGE_URI,
    MODEL_URI,
    MODEL_VERSION,
    PULL_REQUEST_NUMBER,
    PULL_REQUEST_URL,
    RUN_ID,
    TARGET,
)
from control_api.pipeline.step import StepContext, StepResult
from control_api.provider import Provider
from control_api.targets.base import AppRef, DeploymentTarget, app_ref

if TYPE_CHECKING:
    from control_api.adapters.forge.types import Forge
    from control_api.adapters.gitops.repo import GitOpsRepo
    from renderer import DeploymentSpec

# The trailer of the commit that reverts a cancelled deploy's commit; its value is the deployment id.
CANCELS_TRAILER = "Cancels-Deployment-Id"

# The files of a model's Application in the GitOps repo (path -> bytes), committed with its overlay.
ApplicationFiles = Callable[[AppRef], dict[str, bytes]]


def app_of(ctx: StepContext) -> AppRef:
    """The app a deployment record is about (namespace, model and endpoint are fixed when it is created)."""
    return app_ref(ctx.deployment.namespace, ctx.deployment.model_name, ctx.deployment.endpoint)


def require_endpoint_of(gitops: GitOpsRepo, model_name: str, endpoint: str, namespace: str) -> None:
    """Raise 409 when ``endpoint`` serves another model. The newest commit that changed the
    endpoint's folder says which model it serves; after an undeploy it serves none."""
    app = app_ref(namespace, model_name, endpoint)
    newest = gitops.history(path_prefix=app.path, limit=1)
    if not newest or newest[0].trailers.get("Action") == "undeploy":
        return
    owner = newest[0].trailers.get("Model-Name")
    if owner is not None and owner != model_name:
        raise endpoint_in_use(endpoint, namespace, owner)


def endpoint_in_use(endpoint: str, namespace: str, owner: str) -> ConflictError:
    """The answer to an operation of one model on an endpoint that serves ``owner``."""
    return ConflictError(
        f"endpoint {endpoint!r} in {namespace!r} serves model {owner!r}; choose another endpoint_name, "
        f"or undeploy {owner!r} from it first",
        code="endpoint_in_use",
        details={"endpoint": endpoint, "namespace": namespace, "model_name": owner},
    )


def spec_of(ctx: StepContext, app: AppRef) -> DeploymentSpec:
    """The renderer's spec of the version this deployment serves, from its request and the outputs
    of its earlier steps; a spec the renderer refuses is ``render_failed``."""
    from renderer import DeploymentSpec, RenderError

    request = ctx.request
    fields = spec_fields(
        request,
        app.namespace,
        model_version=ctx.outputs[MODEL_VERSION],
        image=ctx.outputs[IMAGE_URI],
        run_id=ctx.outputs[RUN_ID],
        model_uri=ctx.outputs.get(MODEL_URI) or f"models:/{request['model_name']}/{ctx.outputs[MODEL_VERSION]}",
        deployment_id=ctx.deployment_id,
    )
    try:
        return DeploymentSpec.validated(**fields)
    except RenderError as exc:
        raise InvalidRequestError(
            f"cannot render manifests: {exc.message}", code="render_failed", details={"field": exc.field}
        ) from exc


def render_files(ctx: StepContext, app: AppRef, application_files: ApplicationFiles) -> dict[str, bytes]:
    from renderer import render_base, render_model

    return {**render_base(), **render_model(spec_of(ctx, app)), **application_files(app)}


class CommitStep:
    name = "commit"
    status_label = "committing"
    max_attempts = 3

    def __init__(
        self,
        gitops: Provider[GitOpsRepo],
        forge: Provider[Forge | None],
        mlflow: Provider[MlflowGateway],
        application_files: ApplicationFiles,
        target: Provider[DeploymentTarget] | None = None,
    ) -> None:
        """``target``: where a cancelled deploy's revert is synced when the deploy had reached its
        sync step (without it the revert waits for the next sync)."""
        self.gitops = gitops
        self.forge = forge
        self.mlflow = mlflow
        self.application_files = application_files
        self.target = target

    def run(self, ctx: StepContext) -> StepResult:
        request = ctx.request
        app = app_of(ctx)
        files = render_files(ctx, app, self.application_files)
        version = ctx.outputs[MODEL_VERSION]
        trailers = {
            **app.trailers(),
            "Model-Version": str(version),
            "Run-Id": ctx.outputs[RUN_ID],
            "Image": ctx.outputs[IMAGE_URI],
            "Deployment-Id": ctx.deployment_id,
            "Requested-By": ctx.deployment.requested_by,
        }
        subject = f"deploy {request['model_name']} v{version}{app.at_endpoint}"
        review = ctx.settings.git.review_mode
        if not review:
            earlier = earlier_commit_of(ctx, self.gitops(), self.name)
            if earlier is not None:
                ctx.log(
                    f"commit {earlier.sha[:12]} of this deployment is already on {ctx.settings.git.branch} "
                    "(an interrupted attempt pushed it)"
                )
                return StepResult(
                    {
                        COMMIT: earlier.sha,
                        COMMIT_CHANGED: True,
                        GITOPS_PATH: app.path,
                        APPLICATION: app.application,
                        TARGET: ctx.settings.target.kind,
                    },
                    f"committed {earlier.sha[:12]} (found after a restart)",
                )
        branch = f"mlops/deploy-{app.endpoint}-v{version}-{ctx.deployment_id[:8]}" if review else None
        # Asked again here, on the branch as it is now: another deploy may have taken the endpoint
        # for its model since this one was admitted.
        require_endpoint_of(self.gitops(), app.model_name, app.endpoint, app.namespace)
        result = self.gitops().commit(
            CommitRequest(
                files=files,
                replace_dirs=(app.path,),
                delete_paths=(),
                subject=subject,
                body=f"Serve {request['model_name']} version {version} in namespace {app.namespace}{app.at_endpoint}.",
                trailers=trailers,
                branch=branch,
            )
        )
        if branch is not None:
            return self._open_pull_request(ctx, app, subject, result, branch)
        ctx.log(f"commit {result.sha[:12]} on {result.branch} ({'new' if result.changed else 'no change'})")
        return StepResult(
            {
                COMMIT: result.sha,
                COMMIT_CHANGED: result.changed,
                GITOPS_PATH: app.path,
                APPLICATION: app.application,
                TARGET: ctx.settings.target.kind,
            },
            f"{'committed' if result.changed else 'unchanged at'} {result.sha[:12]}",
        )

    def discard(self, ctx: StepContext) -> None:
        """A cancelled deploy leaves no commit: its pull request is closed and its review branch
        deleted, and a commit of it that reached the target branch (pushed directly, or merged
        before the cancel) is reverted by a commit whose trailers describe the state it restores."""
        gitops = self.gitops()
        number = ctx.outputs.get(PULL_REQUEST_NUMBER)
        forge = self.forge() if number is not None else None
        if forge is not None and number is not None:
            closed = forge.close_pull_request(int(number))
            ctx.log(f"pull request {closed.url} is {closed.state}: the deploy was cancelled")
        branch = ctx.outputs.get("review_branch")
        if branch and gitops.delete_branch(str(branch)):
            ctx.log(f"deleted review branch {branch}")
        earlier = gitops.find_by_trailer(CANCELS_TRAILER, ctx.deployment_id)  # an earlier run of this clean-up
        if earlier is not None:
            self._resync(ctx, earlier.sha, earlier.trailers.get("Action", ""))
            return
        mine = gitops.find_by_trailer("Deployment-Id", ctx.deployment_id)
        if mine is not None:
            self._resync(ctx, *self._revert(ctx, mine))

    def _resync(self, ctx: StepContext, revert_sha: str, action: str) -> None:
        """The target ran (or started to run) the cancelled commit: make it run the revert, so the
        cluster matches git again. Syncing is idempotent, so a clean-up run again does it again."""
        sync = ctx.deployment.step("sync")
        if self.target is None or sync is None or (sync.status == StepStatus.PENDING and not sync.outputs):
            return
        app = app_of(ctx)
        target = self.target()
        if action == "undeploy":
            target.remove(app, revert_sha, ctx.log)
            ctx.log(f"removed {app.application} at {revert_sha[:12]}: nothing was served before this deploy")
        else:
            target.sync(app, revert_sha, ctx.log)
            ctx.log(f"synced {app.application} to {revert_sha[:12]}, the state before this deploy")

    def _revert(self, ctx: StepContext, mine: CommitInfo) -> tuple[str, str]:
        """Push the revert of ``mine``; its sha and its ``Action`` trailer."""
        gitops = self.gitops()
        app = app_of(ctx)
        history = gitops.history(path_prefix=app.path, trailer_filter={"Model-Name": app.model_name}, limit=20)
        index = next((i for i, c in enumerate(history) if c.sha == mine.sha), None)
        restored = history[index + 1] if index is not None and index + 1 < len(history) else None
        restores_a_deploy = restored is not None and restored.trailers.get("Action") != "undeploy"
        trailers = app.trailers()
        if restored is not None and restores_a_deploy:
            trailers.update(
                {
                    "Model-Version": restored.trailers.get("Model-Version", ""),
                    "Run-Id": restored.trailers.get("Run-Id", ""),
                    "Image": restored.trailers.get("Image", ""),
                    "Action": "rollback",
                    "Reverts-To": restored.sha,
                }
            )
        else:
            trailers["Action"] = "undeploy"
        trailers.update({CANCELS_TRAILER: ctx.deployment_id, "Requested-By": cancelled_by(ctx)})
        result = gitops.revert(
            mine.sha,
            subject=f"cancel deploy {app.model_name} v{mine.trailers.get('Model-Version', '?')}{app.at_endpoint}",
            body=f"Revert {mine.sha[:12]} ({mine.subject}): deployment {ctx.deployment_id} was cancelled.",
            trailers=trailers,
        )
        ctx.log(f"reverted {mine.sha[:12]} as {result.sha[:12]}: the deploy was cancelled")
        return result.sha, trailers["Action"]

    def _open_pull_request(
        self, ctx: StepContext, app: AppRef, subject: str, result: CommitResult, branch: str
    ) -> StepResult:
        from control_api.adapters.forge import render_pr_body
        from control_api.errors import TerminalError

        forge = self.forge()
        if forge is None:
            raise TerminalError(
                "git.review_mode is on but no forge is configured (MLOPS_FORGE__KIND)", code="forge_not_configured"
            )
        new = {
            "version": ctx.outputs[MODEL_VERSION],
            "image": ctx.outputs[IMAGE_URI],
            RUN_ID: ctx.outputs[RUN_ID],
            "metrics": self._run_metrics(ctx.outputs[RUN_ID]),
        }
        current = self._currently_deployed(app)
        pr = forge.open_pull_request(
            head=branch,
            base=ctx.settings.git.branch,
            title=subject,
            body=render_pr_body(ctx.request["model_name"], new, current),
        )
        ctx.log(f"pull request {pr.url} opened for branch {branch}")
        return StepResult(
            {
                "review_branch": branch,
                "review_commit": result.sha,
                PULL_REQUEST_URL: pr.url,
                PULL_REQUEST_NUMBER: pr.number,
                GITOPS_PATH: app.path,
                APPLICATION: app.application,
                TARGET: ctx.settings.target.kind,
            },
            f"pull request {pr.url}",
        )

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        try:
            return dict(self.mlflow().get_run(run_id).data.metrics)
        except Exception:  # a missing run only removes a column from the PR body
            return {}

    def _currently_deployed(self, app: AppRef) -> dict[str, Any] | None:
        history = self.gitops().history(path_prefix=app.path, trailer_filter={"Model-Name": app.model_name}, limit=20)
        current = next((c for c in history if c.trailers.get("Action", "deploy") != "undeploy"), None)
        if current is None or (history and history[0].trailers.get("Action") == "undeploy"):
            return None
        return {
            "version": current.trailers.get("Model-Version"),
            "image": current.trailers.get("Image"),
            RUN_ID: current.trailers.get("Run-Id"),
            "metrics": self._run_metrics(current.trailers.get("Run-Id")),
        }


def cancelled_by(ctx: StepContext) -> str:
    """Who cancelled the deployment (the requester when the record does not say)."""
    details = (ctx.deployment.error or {}).get("details") or {}
    return str(details.get("cancelled_by") or ctx.deployment.requested_by)


def earlier_commit_of(ctx: StepContext, gitops: GitOpsRepo, step_name: str) -> CommitInfo | None:
    """On a re-run of a commit step (a crash or a failed attempt after the push), the commit that an
    earlier attempt already pushed for this deployment, found by its Deployment-Id trailer. Without
    this, identical bytes would make no new commit and the step would record whatever commit is the
    branch head by now, possibly another deploy's."""
    record = ctx.deployment.step(step_name)
    if record is None or record.attempts <= 1:
        return None  # first attempt: nothing can be there yet, and the search costs a log walk
    return gitops.find_by_trailer("Deployment-Id", ctx.deployment_id)
