"""Registered models, read from the MLflow registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from control_api.api.deps import ServicesDep

router = APIRouter(prefix="/mlops/models", tags=["models"])


@router.get("", summary="Registered models")
async def list_models(services: ServicesDep):
    models = await run_in_threadpool(services.mlflow.list_models)
    return {"models": models, "total": len(models)}


@router.get("/{name}", summary="One registered model with its versions, their runs' metrics and params")
async def get_model(name: str, services: ServicesDep):
    return await run_in_threadpool(services.mlflow.get_model, name)
