"""Endpoints of the first version of the platform, gone on purpose: they say where the work went."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control_api.api.errors import error_response

router = APIRouter(include_in_schema=False)

INFERENCE = (
    "inference is served by each deployed model's own URL: POST {inference_url} "
    "(the deploy response's inference_url, e.g. http://<external-ip>/predict); "
    "see GET /mlops/deployments/{id} for a model's endpoints"
)
TRAINING = (
    "training and registration are done by POST /mlops/deploy, which trains the script, "
    "registers the model and serves it; poll GET /mlops/deployments/{id} for progress"
)


def _gone(message: str) -> Callable[..., Awaitable[JSONResponse]]:
    async def handler(request: Request, rest: str = "") -> JSONResponse:
        return error_response(request, 404, "endpoint_removed", message, {"path": request.url.path})

    return handler


router.add_api_route("/mlops/inference", _gone(INFERENCE), methods=["GET", "POST"])
router.add_api_route("/mlops/training/upload", _gone(TRAINING), methods=["GET", "POST"])
router.add_api_route("/mlops/training/jobs/{rest:path}", _gone(TRAINING), methods=["GET", "POST", "DELETE"])
router.add_api_route("/mlops/registry", _gone(TRAINING), methods=["GET", "POST"])
