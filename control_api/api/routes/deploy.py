"""POST /mlops/deploy: synchronous by default, asynchronous on request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from control_api.api.admission import admit_deploy
from control_api.api.deps import AdmissionDep, OrchestratorDep, RequesterDep, SettingsDep, require_namespace_access
from control_api.api.routes.views import deployment_view
from control_api.api.schemas import CHANGE, DeploymentView, DeployRequest, error_responses
from control_api.journal.store import DeploymentRecord, DeploymentStatus
from control_api.pipeline.orchestrator import Orchestrator

router = APIRouter(prefix="/mlops", tags=["deploy"])


@router.post(
    "/deploy",
    response_model=DeploymentView,
    responses={
        202: {"model": DeploymentView, "description": "Accepted; poll the Location"},
        **error_responses(*CHANGE, 400, 409, 422, 503),
    },
    summary="Train a script, register its model and serve it behind a URL",
)
async def deploy(
    body: DeployRequest,
    request: Request,
    settings: SettingsDep,
    admission: AdmissionDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    wait: Annotated[bool, Query(description="false: answer 202 at once")] = True,
    prefer: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    namespace, journal_request = admit_deploy(body, settings)
    require_namespace_access(request, namespace)
    admitted = admission.deploy(
        model_name=body.model_name,
        namespace=namespace,
        request=journal_request,
        requested_by=requester,
        idempotency_key=idempotency_key,
    )
    response = await answer(admitted.record, orchestrator, wait, prefer, settings.api.max_wait_seconds)
    if admitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _wants_async(wait: bool, prefer: str | None) -> bool:
    return not wait or (prefer is not None and "respond-async" in prefer.lower())


async def answer(
    record: DeploymentRecord, orchestrator: Orchestrator, wait: bool, prefer: str | None, max_wait: float
) -> Response:
    """200 with the finished deployment, or 202 with its Location while it still runs (the client
    asked not to wait, or it did not finish within ``max_wait``)."""
    if not _wants_async(wait, prefer):
        record = await run_in_threadpool(orchestrator.wait, record.id, max_wait)
    return _respond(record)


def _respond(record: DeploymentRecord) -> Response:
    view = deployment_view(record)
    done = record.is_final or record.status == DeploymentStatus.AWAITING_REVIEW
    headers = {"Location": f"/mlops/deployments/{record.id}"}
    if not done:
        headers["Retry-After"] = "2"
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if done else 202, headers=headers)
