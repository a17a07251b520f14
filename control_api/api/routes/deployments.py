"""Deployment status: one deployment, a filtered page of them, retry of a failed one, and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from control_api.api.deps import (
    AdmissionDep,
    OrchestratorDep,
    RequesterDep,
    ServicesDep,
    key_namespaces,
    require_namespace_access,
)
from control_api.api.routes.views import deployment_view
from control_api.api.schemas import CHANGE, MAX_INT64, NO_NUL, READ, DeploymentPage, DeploymentView, error_responses

router = APIRouter(prefix="/mlops/deployments", tags=["deployments"])


@router.get(
    "",
    response_model=DeploymentPage,
    summary="List deployments, newest first",
    responses=error_responses(*READ, 422, 503),
)
def list_deployments(
    request: Request,
    services: ServicesDep,
    model_name: Annotated[str | None, Query(alias="model", max_length=63, pattern=NO_NUL)] = None,
    model_name_alt: Annotated[str | None, Query(alias="model_name", max_length=63, pattern=NO_NUL)] = None,
    status: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    kind: Annotated[str | None, Query(max_length=16, pattern=NO_NUL)] = None,
    endpoint: Annotated[str | None, Query(max_length=63, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> DeploymentPage:
    records, total = services.journal.list(
        model_name=model_name or model_name_alt,
        status=status,
        kind=kind,
        endpoint=endpoint,
        limit=limit,
        offset=offset,
        namespaces=key_namespaces(request),
    )
    return DeploymentPage(items=[deployment_view(r) for r in records], total=total, limit=limit, offset=offset)


@router.get(
    "/{deployment_id}",
    response_model=DeploymentView,
    summary="One deployment with its steps",
    responses=error_responses(*READ, 404, 422, 503),
)
def get_deployment(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)], request: Request, services: ServicesDep
) -> DeploymentView:
    record = services.journal.get(deployment_id)
    require_namespace_access(request, record.namespace)
    return deployment_view(record)


@router.post(
    "/{deployment_id}/retry",
    response_model=DeploymentView,
    status_code=202,
    summary="Resume a failed or timed-out deployment from its failed step",
    responses=error_responses(*CHANGE, 404, 409, 422, 503),
)
def retry_deployment(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)],
    request: Request,
    services: ServicesDep,
    admission: AdmissionDep,
) -> DeploymentView:
    require_namespace_access(request, services.journal.get(deployment_id).namespace)
    return deployment_view(admission.retry(deployment_id))


@router.post(
    "/{deployment_id}/cancel",
    response_model=DeploymentView,
    summary="Cancel a running deployment at whatever step it is",
    description=(
        "Stops the step in flight (kills the training, stops the image build, closes the pull request "
        "of a deploy awaiting review) and undoes what the deploy made: the MLflow version it registered "
        "is deleted (its run stays, `KILLED` and tagged `mlops.cancelled`), the image tag it pushed is "
        "deleted, and a commit of it on the target branch is reverted. The deployment ends `cancelled`, "
        "its `error` naming who cancelled it and at which step.\n\n"
        "200: the cancel is complete (`cancelled`). 202: a step is still stopping; the deployment is "
        "`cancelling` and ends `cancelled` on its own (poll the Location). "
        "404 `deployment_not_found`: no such deployment. 409 `deployment_finished`: it has already "
        "finished; `details.status` says how, and nothing changes."
    ),
    responses={
        202: {"model": DeploymentView, "description": "Cancelling; poll the Location"},
        **error_responses(*CHANGE, 404, 409, 422, 503),
    },
)
def cancel_deployment(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)],
    request: Request,
    services: ServicesDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
) -> JSONResponse:
    require_namespace_access(request, services.journal.get(deployment_id).namespace)
    record = orchestrator.cancel(deployment_id, requester)
    done = record.is_final
    headers = {"Location": f"/mlops/deployments/{record.id}"}
    if not done:
        headers["Retry-After"] = "1"
    return JSONResponse(
        deployment_view(record).model_dump(mode="json"), status_code=200 if done else 202, headers=headers
    )


_STEER_ANSWERS = (
    "202: asked; the canary step acts on it at once (poll the Location until the deployment ends). "
    "404 `deployment_not_found`: no such deployment. 409 `not_a_canary`: the deployment is not a canary "
    "release. 409 `canary_not_running`: its canary steps are not running (not started yet, promoting, "
    "aborting, or finished); nothing changes."
)


def _steer(
    deployment_id: str, action: str, request: Request, services: ServicesDep, admission: AdmissionDep, requester: str
) -> JSONResponse:
    require_namespace_access(request, services.journal.get(deployment_id).namespace)
    record = admission.steer_canary(deployment_id, action, requester)
    headers = {"Location": f"/mlops/deployments/{record.id}", "Retry-After": "1"}
    return JSONResponse(deployment_view(record).model_dump(mode="json"), status_code=202, headers=headers)


@router.post(
    "/{deployment_id}/promote",
    response_model=DeploymentView,
    status_code=202,
    summary="Promote a running canary now, skipping its remaining steps",
    description=(
        "The canary's new version becomes the stable one: one commit renders the endpoint with only the new "
        "version (the old Deployment is removed), which is synced and awaited; the deployment ends `deployed`. "
        + _STEER_ANSWERS
    ),
    responses={202: {"model": DeploymentView, "description": "Promoting"}, **error_responses(*CHANGE, 404, 409, 503)},
)
def promote_canary(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)],
    request: Request,
    services: ServicesDep,
    admission: AdmissionDep,
    requester: RequesterDep,
) -> JSONResponse:
    return _steer(deployment_id, "promote", request, services, admission, requester)


@router.post(
    "/{deployment_id}/abort",
    response_model=DeploymentView,
    status_code=202,
    summary="Abort a running canary: a commit restores the stable version alone",
    description=(
        "One commit restores the endpoint's files as of the stable version's commit (the canary Deployment "
        "is removed), which is synced and awaited; the deployment ends `rolled_back`, its canary step naming "
        "who aborted it. " + _STEER_ANSWERS
    ),
    responses={202: {"model": DeploymentView, "description": "Aborting"}, **error_responses(*CHANGE, 404, 409, 503)},
)
def abort_canary(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)],
    request: Request,
    services: ServicesDep,
    admission: AdmissionDep,
    requester: RequesterDep,
) -> JSONResponse:
    return _steer(deployment_id, "abort", request, services, admission, requester)
