"""Registered models, read from the MLflow registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from control_api.api.deps import ServicesDep
from control_api.api.schemas import READ, ModelDetail, ModelList, error_responses

router = APIRouter(prefix="/mlops/models", tags=["models"])


@router.get("", summary="Registered models", responses={200: {"model": ModelList}, **error_responses(*READ, 400, 503)})
async def list_models(services: ServicesDep):
    models = await run_in_threadpool(services.mlflow.list_models)
    return {"models": models, "total": len(models)}


@router.get("/{name}", summary="One registered model with its versions, their runs' metrics and params",
            responses={200: {"model": ModelDetail}, **error_responses(*READ, 400, 404, 503)})
async def get_model(name: str, services: ServicesDep):
    return await run_in_threadpool(services.mlflow.get_model, name)
