"""The control service's own probes and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from control_api import __version__
from control_api.api.schemas import ANY_ROUTE, READ, HealthBody, ReadyBody, error_responses

router = APIRouter(tags=["system"])


@router.get(
    "/health",
    summary="Liveness of the control service",
    response_model=None,  # documented through ``responses``
    responses={200: {"model": HealthBody}, **error_responses(*ANY_ROUTE)},
)
def health() -> dict[str, str]:
    return {"status": "healthy", "version": __version__}


@router.get(
    "/ready",
    summary="Readiness: the journal answers and unfinished deploys were resumed",
    response_model=None,  # documented through ``responses``
    responses={
        200: {"model": ReadyBody},
        503: {"model": ReadyBody, "description": "The journal does not answer"},
        **error_responses(*READ),
    },
)
def ready(request: Request) -> dict[str, str] | JSONResponse:
    state = request.app.state
    try:
        state.services.journal.ping()
    except Exception as exc:
        return JSONResponse({"status": "not_ready", "reason": str(exc)[:200]}, status_code=503)
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics of the control service",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        **error_responses(*READ),
    },
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
