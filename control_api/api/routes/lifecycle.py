"""Rollback, undeploy and deploy history of a model. Each change is a git commit plus a sync."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from control_api.api.admission import allowed_namespace
from control_api.api.deps import OrchestratorDep, RequesterDep, ServicesDep, require_namespace_access
from control_api.api.routes.deploy import _answer_async
from control_api.api.schemas import CHANGE, READ, DeploymentView, ModelHistory, dns1123_label, error_responses
from control_api.errors import ConflictError
from control_api.pipeline.pipelines import ROLLBACK, UNDEPLOY

router = APIRouter(prefix="/mlops/models", tags=["lifecycle"])


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, pattern=r"^[0-9]{1,9}$", description="Version to serve; default: the one before the current"
    )
    namespace: str | None = Field(default=None, max_length=63)


def _namespace(services, namespace: str | None) -> str:
    return allowed_namespace(services.settings, namespace)


def _require_gitops_target(services) -> None:
    if services.settings.target.kind == "none":
        raise ConflictError(
            "the service runs with target 'none': nothing is deployed, so nothing can be rolled back or removed",
            code="no_target",
        )


async def _history_if_idle(services, name: str, namespace: str) -> list:
    """The model's deploy history, read only when no operation on it runs (409 then, as _start says)."""
    from control_api.pipeline.steps.rollback import deploy_history

    dns1123_label(name, "model name")
    services.journal.refuse_if_busy(name, namespace)
    _, history = await run_in_threadpool(deploy_history, services, namespace, name)
    return history


def _start(services, orchestrator, kind: str, name: str, namespace: str, request: dict, requester: str):
    dns1123_label(name, "model name")
    services.journal.refuse_if_busy(name, namespace)
    record = services.journal.create(
        kind=kind,
        model_name=name,
        namespace=namespace,
        request=request,
        step_names=orchestrator.pipelines[kind].step_names,
        requested_by=requester,
    )
    orchestrator.start(record.id)
    return record


@router.post(
    "/{name}/rollback",
    response_model=DeploymentView,
    summary="Serve an earlier version again (revert-style commit + sync)",
    responses={
        202: {"model": DeploymentView, "description": "Accepted; poll the Location"},
        **error_responses(*CHANGE, 400, 404, 409, 422, 503),
    },
)
async def rollback(
    name: str,
    request: Request,
    services: ServicesDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    body: RollbackRequest | None = None,
    wait: Annotated[bool, Query()] = True,
    prefer: Annotated[str | None, Header()] = None,
):
    body = body or RollbackRequest()
    _require_gitops_target(services)
    namespace = _namespace(services, body.namespace)
    require_namespace_access(request, namespace)
    from control_api.pipeline.steps.rollback import rollback_target

    rollback_target(await _history_if_idle(services, name, namespace), name, namespace, body.version)
    record = _start(
        services,
        orchestrator,
        ROLLBACK,
        name,
        namespace,
        {"model_name": name, "namespace": namespace, "version": body.version},
        requester,
    )
    return await _answer_async(record, orchestrator, wait, prefer, services.settings.api.max_wait_seconds)


@router.delete(
    "/{name}/deployment",
    response_model=DeploymentView,
    summary="Remove the model's manifests in a commit and prune",
    responses={
        202: {"model": DeploymentView, "description": "Accepted; poll the Location"},
        **error_responses(*CHANGE, 404, 409, 422, 503),
    },
)
async def undeploy(
    name: str,
    request: Request,
    services: ServicesDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    wait: Annotated[bool, Query()] = True,
    prefer: Annotated[str | None, Header()] = None,
):
    _require_gitops_target(services)
    namespace = _namespace(services, namespace)
    require_namespace_access(request, namespace)
    from control_api.pipeline.steps.rollback import require_deployed

    require_deployed(await _history_if_idle(services, name, namespace), name, namespace)
    record = _start(
        services, orchestrator, UNDEPLOY, name, namespace, {"model_name": name, "namespace": namespace}, requester
    )
    return await _answer_async(record, orchestrator, wait, prefer, services.settings.api.max_wait_seconds)


@router.get(
    "/{name}/history",
    summary="Deploy, rollback and undeploy commits of a model, newest first",
    responses={200: {"model": ModelHistory}, **error_responses(*READ, 409, 422, 503)},
)
async def history(
    name: str,
    request: Request,
    services: ServicesDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    _require_gitops_target(services)
    dns1123_label(name, "model name")
    namespace = _namespace(services, namespace)
    require_namespace_access(request, namespace)
    from control_api.pipeline.served import HISTORY_DEPTH, target_syncs
    from control_api.pipeline.steps.rollback import deploy_history

    # One read of the history serves both lists: the syncs need enough of it to order them.
    _, history = await run_in_threadpool(deploy_history, services, namespace, name, max(limit, HISTORY_DEPTH))
    syncs = await run_in_threadpool(target_syncs, services, namespace, name, history)
    commits = history[:limit]
    return {
        "model_name": name,
        "namespace": namespace,
        "target_syncs": syncs,
        "commits": [
            {
                "sha": c.sha,
                "subject": c.subject,
                "action": c.trailers.get("Action", "deploy"),
                "version": c.trailers.get("Model-Version"),
                "image": c.trailers.get("Image"),
                "run_id": c.trailers.get("Run-Id"),
                "deployment_id": c.trailers.get("Deployment-Id"),
                "requested_by": c.trailers.get("Requested-By"),
                "author": c.author_name,
                "date": c.date,
            }
            for c in commits
        ],
    }
