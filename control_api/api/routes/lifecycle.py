"""Rollback, undeploy, version deploy and deploy history of a model's endpoint (its default one, named
after the model, unless the request names another). Each change is a git commit plus a sync."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from control_api.api.deps import (
    AdmissionDep,
    OrchestratorDep,
    RequesterDep,
    ServicesDep,
    SettingsDep,
    require_namespace_access,
)
from control_api.api.routes.deploy import answer
from control_api.api.schemas import (
    CHANGE,
    READ,
    DeploymentView,
    EndpointName,
    ModelHistory,
    VersionDeployRequest,
    dns1123_label,
    error_responses,
)
from control_api.errors import NotFoundError
from control_api.pipeline.admission import Admission
from control_api.pipeline.served import HISTORY_DEPTH, target_syncs
from control_api.pipeline.steps.rollback import deploy_history
from control_api.services import Services
from control_api.targets.base import DeploymentTarget

router = APIRouter(prefix="/mlops/models", tags=["lifecycle"])


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, pattern=r"^[0-9]{1,9}$", description="Version to serve; default: the one before the current"
    )
    namespace: str | None = Field(default=None, max_length=63)
    endpoint_name: EndpointName = None


EndpointQuery = Annotated[
    str | None, Query(max_length=63, description="One of the model's endpoints; default: the model's name")
]


def _endpoint(name: str, endpoint: str | None) -> str:
    """The endpoint a lifecycle request is about, checked like the model's name."""
    return dns1123_label(endpoint, "endpoint_name") if endpoint else name


def _gitops_target(services: Services, admission: Admission) -> DeploymentTarget:
    admission.require_target()
    target = services.target
    if target is None:
        raise RuntimeError(f"target kind {services.settings.target.kind!r} has a rollback pipeline but no target")
    return target


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
    settings: SettingsDep,
    admission: AdmissionDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    body: RollbackRequest | None = None,
    wait: Annotated[bool, Query()] = True,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    body = body or RollbackRequest()
    admission.require_target()
    namespace = admission.namespace(body.namespace)
    require_namespace_access(request, namespace)
    dns1123_label(name, "model name")
    version = body.version
    endpoint = body.endpoint_name or name
    record = await run_in_threadpool(lambda: admission.rollback(name, namespace, version, requester, endpoint))
    return await answer(record, orchestrator, wait, prefer, settings.api.max_wait_seconds)


@router.post(
    "/{name}/versions/{version}/deploy",
    response_model=DeploymentView,
    summary="Serve a registered version without training (the image an earlier deploy of it pushed, "
    "or one built from the registered model)",
    responses={
        202: {"model": DeploymentView, "description": "Accepted; poll the Location"},
        **error_responses(*CHANGE, 400, 404, 409, 422, 503),
    },
)
async def deploy_version(
    name: str,
    version: Annotated[str, Path(pattern=r"^[0-9]{1,9}$", description="A registered version of the model")],
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    body: VersionDeployRequest | None = None,
    wait: Annotated[bool, Query()] = True,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    body = body or VersionDeployRequest()
    admission.require_target()
    namespace = admission.namespace(body.namespace)
    require_namespace_access(request, namespace)
    dns1123_label(name, "model name")
    await run_in_threadpool(_require_version, services, name, version)
    journaled = body.to_journal(name, version, namespace)
    record = await run_in_threadpool(lambda: admission.deploy_version(journaled, namespace, requester))
    return await answer(record, orchestrator, wait, prefer, settings.api.max_wait_seconds)


def _require_version(services: Services, name: str, version: str) -> None:
    """A version deploy of a version the registry does not have is refused before anything is made."""
    try:
        services.mlflow.get_version(name, version)
    except NotFoundError as exc:
        raise NotFoundError(
            f"{name} has no registered version {version}; `mlops models {name}` lists its versions",
            code="model_version_not_found",
            details={"model_name": name, "version": version},
        ) from exc


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
    settings: SettingsDep,
    admission: AdmissionDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    endpoint: EndpointQuery = None,
    wait: Annotated[bool, Query()] = True,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    admission.require_target()
    allowed = admission.namespace(namespace)
    require_namespace_access(request, allowed)
    dns1123_label(name, "model name")
    chosen = _endpoint(name, endpoint)
    record = await run_in_threadpool(lambda: admission.undeploy(name, allowed, requester, chosen))
    return await answer(record, orchestrator, wait, prefer, settings.api.max_wait_seconds)


@router.get(
    "/{name}/history",
    summary="Deploy, rollback and undeploy commits of a model, newest first",
    response_model=None,  # documented through ``responses``; the return annotation is for mypy
    responses={200: {"model": ModelHistory}, **error_responses(*READ, 409, 422, 503)},
)
async def history(
    name: str,
    request: Request,
    services: ServicesDep,
    admission: AdmissionDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    endpoint: EndpointQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    target = _gitops_target(services, admission)
    dns1123_label(name, "model name")
    chosen = _endpoint(name, endpoint)
    allowed = admission.namespace(namespace)
    require_namespace_access(request, allowed)
    # One read of the history serves both lists: the syncs need enough of it to order them.
    _, history = await run_in_threadpool(
        lambda: deploy_history(services.gitops, allowed, name, max(limit, HISTORY_DEPTH), endpoint=chosen)
    )
    syncs = await run_in_threadpool(
        lambda: target_syncs(target, services.gitops, allowed, name, history, endpoint=chosen)
    )
    commits = history[:limit]
    return {
        "model_name": name,
        "endpoint": chosen,
        "namespace": allowed,
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
