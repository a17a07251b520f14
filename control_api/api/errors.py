"""Errors to HTTP: one ordered table, first match wins, and one body format for every 4xx and 5xx.

{"error": {"code": "...", "message": "...", "details": ..., "request_id": "..."}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_api import errors
from control_api.redaction import redact, redact_value

log = logging.getLogger(__name__)

# Order matters: subclasses before their bases.
ERROR_STATUS: tuple[tuple[type[errors.MlopsError], int], ...] = (
    (errors.InvalidRequestError, 422),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.ForbiddenError, 403),
    (errors.RegistryAuthFailed, 502),
    (errors.ServiceUnavailable, 503),
    (errors.TransientError, 503),
    (errors.TerminalError, 400),
    (errors.MlopsError, 500),
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def status_for(exc: errors.MlopsError) -> int:
    for error_type, status in ERROR_STATUS:
        if isinstance(exc, error_type):
            return status
    return 500


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Every error body passes here: messages quote remotes (MLflow, Argo CD, git ...) that may echo credentials.
    body = {
        "error": {
            "code": code,
            "message": redact(message),
            "details": redact_value(details),
            "request_id": request_id_of(request),
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.MlopsError)
    async def _mlops_error(request: Request, exc: errors.MlopsError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.url.path, status, exc.message)
        return error_response(request, status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            field = _field_path(tuple(err.get("loc", ())))
            rule = err.get("type", "invalid")
            message = err.get("msg", "invalid value")
            if rule == "extra_forbidden":
                message = "unknown field"
            details.append({"field": field, "rule": rule, "message": message})
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(request, 422, "validation_error", f"invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error; see the service log for this request id")
