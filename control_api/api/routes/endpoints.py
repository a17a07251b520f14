"""The endpoints models are served at: what git says each should serve and what its target serves."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from control_api.api.deps import AdmissionDep, ServicesDep, key_namespaces, require_namespace_access
from control_api.api.schemas import READ, EndpointList, dns1123_label, error_responses
from control_api.pipeline.endpoints import list_endpoints

router = APIRouter(prefix="/mlops/endpoints", tags=["lifecycle"])


@router.get(
    "",
    summary="Every endpoint with the model and version it serves, its URL and health",
    response_model=None,  # documented through ``responses``; the return annotation is for mypy
    responses={200: {"model": EndpointList}, **error_responses(*READ, 409, 422, 503)},
)
async def endpoints(
    request: Request,
    services: ServicesDep,
    admission: AdmissionDep,
    namespace: Annotated[str | None, Query(max_length=63, description="Default: every allowed namespace")] = None,
    model: Annotated[str | None, Query(max_length=63, description="Only this model's endpoints")] = None,
) -> dict[str, Any]:
    admission.require_target()
    target = services.target
    if target is None:
        raise RuntimeError(f"target kind {services.settings.target.kind!r} serves but has no target")
    if namespace is not None:
        namespaces = [admission.namespace(namespace)]
        require_namespace_access(request, namespaces[0])
    else:
        scope = key_namespaces(request)
        namespaces = [n for n in services.settings.api.allowed_namespaces if scope is None or n in scope]
    model_name = dns1123_label(model, "model") if model else None
    found = await run_in_threadpool(list_endpoints, target, services.gitops, namespaces, model_name)
    return {"endpoints": found, "total": len(found)}
