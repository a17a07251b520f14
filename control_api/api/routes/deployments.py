"""Deployment status: one deployment, a filtered page of them, and retry of a failed one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from control_api.api.deps import AdmissionDep, ServicesDep, key_namespaces, require_namespace_access
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
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> DeploymentPage:
    records, total = services.journal.list(
        model_name=model_name or model_name_alt,
        status=status,
        kind=kind,
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
