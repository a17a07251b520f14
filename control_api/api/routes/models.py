"""Registered models, read from the MLflow registry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from control_api.api.deps import AdmissionDep, ServicesDep
from control_api.api.schemas import READ, ModelDetail, ModelList, dns1123_label, error_responses

router = APIRouter(prefix="/mlops/models", tags=["models"])


# The 200 bodies are documented through ``responses``; response_model=None keeps the return
# annotations out of the OpenAPI document.
@router.get(
    "",
    summary="Registered models",
    response_model=None,
    responses={200: {"model": ModelList}, **error_responses(*READ, 400, 503)},
)
async def list_models(services: ServicesDep) -> dict[str, Any]:
    models = await run_in_threadpool(services.mlflow.list_models)
    return {"models": models, "total": len(models)}


@router.get(
    "/{name}",
    summary="One registered model with its versions, their runs' metrics and params",
    response_model=None,
    responses={200: {"model": ModelDetail}, **error_responses(*READ, 400, 404, 503)},
)
async def get_model(
    name: str,
    services: ServicesDep,
    admission: AdmissionDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    endpoint: Annotated[
        str | None, Query(max_length=63, description="The endpoint whose `served` to show; default: the model's name")
    ] = None,
) -> dict[str, Any]:
    """``served`` and ``drift`` come from the target itself (Argo CD's history on the ``argocd``
    target), so a rollback made in the Argo CD UI shows here. ``GET /mlops/endpoints`` lists every
    endpoint."""
    from control_api.pipeline.served import served_and_drift

    model = await run_in_threadpool(services.mlflow.get_model, name)
    target = services.target
    if target is None:
        return model
    allowed = admission.namespace(namespace)
    chosen = dns1123_label(endpoint, "endpoint") if endpoint else None
    served, drift = await run_in_threadpool(
        lambda: served_and_drift(target, services.gitops, services.settings.git.branch, allowed, name, chosen)
    )
    return {**model, "served": served, "drift": drift}
