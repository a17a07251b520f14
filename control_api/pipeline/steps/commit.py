"""Step ``commit``: render the model's Kustomize overlay and commit it to the GitOps repo.

One deploy is one commit with a readable subject and machine-readable trailers. Identical bytes make
no commit, so a retried deploy never adds a second one.
"""

from __future__ import annotations

from typing import Any

from control_api.adapters.gitops.types import CommitRequest
from control_api.deployment_spec import spec_fields
from control_api.errors import InvalidRequestError
from control_api.pipeline.step import StepContext
from control_api.targets import AppRef


def app_ref(namespace: str, model_name: str) -> AppRef:
    from renderer import application_name, model_dir

    return AppRef(namespace, model_name, model_dir(namespace, model_name), application_name(namespace, model_name))


def app_of(ctx: StepContext) -> AppRef:
    """The app a deployment record is about (namespace and model are fixed when it is created)."""
    return app_ref(ctx.deployment.namespace, ctx.deployment.model_name)


def render_files(ctx: StepContext, app: AppRef) -> dict[str, bytes]:
    from renderer import DeploymentSpec, RenderError, render_application, render_base, render_model

    request = ctx.request
    fields = spec_fields(
        request,
        app.namespace,
        model_version=ctx.outputs["model_version"],
        image=ctx.outputs["image_uri"],
        run_id=ctx.outputs["run_id"],
        model_uri=ctx.outputs.get("model_uri") or f"models:/{request['model_name']}/{ctx.outputs['model_version']}",
        deployment_id=ctx.outputs.get("source_deployment_id") or ctx.deployment_id,
    )
    try:
        spec = DeploymentSpec.validated(**fields)
    except RenderError as exc:
        raise InvalidRequestError(
            f"cannot render manifests: {exc.message}", code="render_failed", details={"field": exc.field}
        ) from exc
    files = {**render_base(), **render_model(spec)}
    from control_api.targets.argocd import ArgoCDTarget

    files.update(render_application(ArgoCDTarget(ctx.services).application_spec(app)))
    return files


class CommitStep:
    name = "commit"
    status_label = "committing"
    max_attempts = 3

    def run(self, ctx: StepContext) -> dict[str, Any]:
        request = ctx.request
        app = app_of(ctx)
        files = render_files(ctx, app)
        version = ctx.outputs["model_version"]
        trailers = {
            "Model-Name": request["model_name"],
            "Model-Version": str(version),
            "Run-Id": ctx.outputs["run_id"],
            "Image": ctx.outputs["image_uri"],
            "Deployment-Id": ctx.deployment_id,
            "Requested-By": ctx.deployment.requested_by,
        }
        subject = f"deploy {request['model_name']} v{version}"
        review = ctx.settings.git.review_mode
        if not review:
            earlier = earlier_commit_of(ctx, self.name)
            if earlier is not None:
                ctx.log(
                    f"commit {earlier.sha[:12]} of this deployment is already on {ctx.settings.git.branch} (an interrupted attempt pushed it)"
                )
                return {
                    "commit": earlier.sha,
                    "commit_changed": True,
                    "gitops_path": app.path,
                    "application": app.application,
                    "target": ctx.settings.target.kind,
                    "_message": f"committed {earlier.sha[:12]} (found after a restart)",
                }
        branch = f"mlops/deploy-{request['model_name']}-v{version}-{ctx.deployment_id[:8]}" if review else None
        result = ctx.services.gitops.commit(
            CommitRequest(
                files=files,
                replace_dirs=(app.path,),
                delete_paths=(),
                subject=subject,
                body=f"Serve {request['model_name']} version {version} in namespace {app.namespace}.",
                trailers=trailers,
                branch=branch,
            )
        )
        if review:
            return self._open_pull_request(ctx, app, subject, result, branch)
        ctx.log(f"commit {result.sha[:12]} on {result.branch} ({'new' if result.changed else 'no change'})")
        return {
            "commit": result.sha,
            "commit_changed": result.changed,
            "gitops_path": app.path,
            "application": app.application,
            "target": ctx.settings.target.kind,
            "_message": f"{'committed' if result.changed else 'unchanged at'} {result.sha[:12]}",
        }

    def _open_pull_request(self, ctx: StepContext, app, subject: str, result, branch: str) -> dict[str, Any]:
        from control_api.adapters.forge import render_pr_body
        from control_api.errors import TerminalError

        forge = ctx.services.forge
        if forge is None:
            raise TerminalError(
                "git.review_mode is on but no forge is configured (MLOPS_FORGE__KIND)", code="forge_not_configured"
            )
        new = {
            "version": ctx.outputs["model_version"],
            "image": ctx.outputs["image_uri"],
            "run_id": ctx.outputs["run_id"],
            "metrics": _run_metrics(ctx, ctx.outputs["run_id"]),
        }
        current = _currently_deployed(ctx, app)
        pr = forge.open_pull_request(
            head=branch,
            base=ctx.settings.git.branch,
            title=subject,
            body=render_pr_body(ctx.request["model_name"], new, current),
        )
        ctx.log(f"pull request {pr.url} opened for branch {branch}")
        return {
            "review_branch": branch,
            "review_commit": result.sha,
            "pull_request_url": pr.url,
            "pull_request_number": pr.number,
            "gitops_path": app.path,
            "application": app.application,
            "target": ctx.settings.target.kind,
            "_message": f"pull request {pr.url}",
        }


def earlier_commit_of(ctx: StepContext, step_name: str):
    """On a re-run of a commit step (a crash or a failed attempt after the push), the commit that an
    earlier attempt already pushed for this deployment, found by its Deployment-Id trailer. Without
    this, identical bytes would make no new commit and the step would record whatever commit is the
    branch head by now, possibly another deploy's."""
    record = ctx.deployment.step(step_name)
    if record is None or record.attempts <= 1:
        return None  # first attempt: nothing can be there yet, and the search costs a log walk
    return ctx.services.gitops.find_by_trailer("Deployment-Id", ctx.deployment_id)


def _run_metrics(ctx: StepContext, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    try:
        return dict(ctx.services.mlflow.get_run(run_id).data.metrics)
    except Exception:  # a missing run only removes a column from the PR body
        return {}


def _currently_deployed(ctx: StepContext, app) -> dict[str, Any] | None:
    history = ctx.services.gitops.history(path_prefix=app.path, trailer_filter={"Model-Name": app.model_name}, limit=20)
    current = next((c for c in history if c.trailers.get("Action", "deploy") != "undeploy"), None)
    if current is None or (history and history[0].trailers.get("Action") == "undeploy"):
        return None
    return {
        "version": current.trailers.get("Model-Version"),
        "image": current.trailers.get("Image"),
        "run_id": current.trailers.get("Run-Id"),
        "metrics": _run_metrics(ctx, current.trailers.get("Run-Id")),
    }
