"""POST /mlops/deploy: synchronous by default, asynchronous on request."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from control_api.api.admission import admit_deploy
from control_api.api.deps import OrchestratorDep, RequesterDep, ServicesDep, require_namespace_access
from control_api.api.routes.views import deployment_view
from control_api.api.schemas import CHANGE, DeploymentView, DeployRequest, error_responses
from control_api.errors import InvalidRequestError
from control_api.journal.store import DeploymentStatus
from control_api.pipeline.pipelines import DEPLOY

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
    services: ServicesDep,
    orchestrator: OrchestratorDep,
    requester: RequesterDep,
    wait: Annotated[bool, Query(description="false: answer 202 at once")] = True,
    prefer: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
):
    settings = services.settings
    namespace, journal_request = admit_deploy(body, settings)
    require_namespace_access(request, namespace)
    journal = services.journal
    if idempotency_key:
        earlier = journal.find_by_idempotency_key(idempotency_key, requester)
        if earlier is not None:
            refuse_a_different_request(idempotency_key, earlier.request, journal_request)
            response = await _answer_async(earlier, orchestrator, wait, prefer, settings.api.max_wait_seconds)
            response.headers["Idempotent-Replayed"] = "true"
            return response
    journal.refuse_if_busy(body.model_name, namespace)
    record = journal.create(
        kind=DEPLOY,
        model_name=body.model_name,
        namespace=namespace,
        request=journal_request,
        step_names=orchestrator.pipelines[DEPLOY].step_names,
        requested_by=requester,
        idempotency_key=idempotency_key,
    )
    orchestrator.start(record.id)
    return await _answer_async(record, orchestrator, wait, prefer, settings.api.max_wait_seconds)


def refuse_a_different_request(key: str, earlier: dict, now: dict) -> None:
    """An Idempotency-Key names one request: the same key with another body is a client bug, and
    answering with the first deploy would hide it."""
    if json.loads(json.dumps(now, sort_keys=True, default=str)) != json.loads(
        json.dumps(earlier, sort_keys=True, default=str)
    ):
        differing = sorted(k for k in set(now) | set(earlier) if now.get(k) != earlier.get(k))
        raise InvalidRequestError(
            f"Idempotency-Key {key!r} was used for a different request (fields differ: {', '.join(differing) or 'body'}); "
            "use a new key for a new request",
            code="idempotency_key_conflict",
            details=[{"field": "Idempotency-Key", "rule": "same_request", "differing": differing}],
        )


def _wants_async(wait: bool, prefer: str | None) -> bool:
    return not wait or (prefer is not None and "respond-async" in prefer.lower())


async def _answer_async(record, orchestrator, wait, prefer, max_wait):
    if not _wants_async(wait, prefer):
        record = await run_in_threadpool(orchestrator.wait, record.id, max_wait)
    return _respond(record)


def _respond(record) -> Response:
    view = deployment_view(record)
    done = record.is_final or record.status == DeploymentStatus.AWAITING_REVIEW
    headers = {"Location": f"/mlops/deployments/{record.id}"}
    if not done:
        headers["Retry-After"] = "2"
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if done else 202, headers=headers)
