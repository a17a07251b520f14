"""Platform status: each component the service depends on, its health and how long the check took."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from control_api.api.deps import ServicesDep
from control_api.api.schemas import READ, PlatformStatus, error_responses
from control_api.redaction import redact
from control_api.services import Services
from control_api.training import sandbox as training_sandbox

router = APIRouter(tags=["status"])

CHECK_TIMEOUT_SECONDS = 10


def component_checks(services: Services) -> dict[str, Callable[[], object]]:
    checks: dict[str, Callable[[], object]] = {
        # Lambdas, so that building an adapter (not just pinging it) fails inside the timed check.
        "mlflow": lambda: services.mlflow.ping(),
        "journal": lambda: services.journal.ping(),
    }
    checks.update(services.extra_checks())
    # Cached after the first call; unhealthy only when the sandbox is required and cannot work here.
    checks["training_sandbox"] = lambda: training_sandbox.status(services.settings.training.sandbox)
    return checks


def _timed(check: Callable[[], object]) -> dict[str, Any]:
    started = time.perf_counter()
    info = None
    try:
        info = check()
        status, error = "healthy", None
    except Exception as exc:  # a status page reports failures, it does not raise them
        status, error = "unhealthy", redact(str(getattr(exc, "message", exc)))[:500]
    result: dict[str, Any] = {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if error:
        result["error"] = error
    if isinstance(info, dict):  # a check may describe what it found, e.g. {"detail": "..."}
        result.update({k: v for k, v in info.items() if k not in result})
    return result


def platform_status(services: Services) -> dict[str, Any]:
    checks = component_checks(services)
    # One deadline for the whole page; a check still running then is reported and keeps running.
    done = services.status_checks.run(
        {name: partial(_timed, check) for name, check in checks.items()}, CHECK_TIMEOUT_SECONDS
    )
    timed_out = {"status": "unhealthy", "latency_ms": CHECK_TIMEOUT_SECONDS * 1000, "error": "check timed out"}
    components = {name: done.get(name, timed_out) for name in checks}
    overall = "healthy" if all(c["status"] == "healthy" for c in components.values()) else "unhealthy"
    return {
        "status": overall,
        "timestamp": datetime.now(UTC).isoformat(),
        "target": services.settings.target.kind,
        "components": components,
    }


@router.get(
    "/mlops/status",
    summary="Health of every component the platform depends on",
    responses={
        200: {"model": PlatformStatus},
        **error_responses(*READ),
        503: {"model": PlatformStatus, "description": "Some component is unhealthy (the body says which)"},
    },
)
async def get_status(services: ServicesDep) -> JSONResponse:
    body = await run_in_threadpool(platform_status, services)
    return JSONResponse(body, status_code=200 if body["status"] == "healthy" else 503)
