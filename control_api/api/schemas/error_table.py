"""The OpenAPI error table: every documented answer other than the happy path.

Every 4xx and 5xx the service gives has the body of control_api.api.errors.error_response. Routes
declare which of them they can give, so the OpenAPI document is a truthful contract
(tests/security/test_openapi_fuzz.py checks every answer against it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable error code (see docs/troubleshooting.md).")
    message: str
    details: Any = Field(
        default=None, description="Which fields broke which rules, or the id of a conflicting deployment."
    )
    request_id: str = Field(description="Also in the X-Request-ID header; quote it when reporting a problem.")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorInfo


_ERROR_DESCRIPTIONS = {
    400: "The request cannot be carried out as given: a body that is not UTF-8 JSON text, or a request MLflow refused",
    401: "No API key, or one that is not valid",
    403: "The API key's role does not allow this call",
    404: "No such resource",
    409: "Conflicts with the current state (a deploy of this model is running, nothing to retry, no target)",
    413: "The request body is larger than api.max_body_bytes",
    422: "The request does not validate: details lists each field and rule",
    429: "The API key's rate limit is spent: wait Retry-After seconds",
    500: "Unexpected error (a bug): the service log has the request id",
    503: "A system the service depends on (journal, MLflow, ...) did not answer; retry later",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds until a request would be allowed"}},
}
# Any route: a body over the limit is refused before anything else; a bug is a 500 in the same format.
ANY_ROUTE = (413, 500)
# Every protected route: no or a wrong key (401), a key scoped to other namespaces (403), rate limits
# (429), and keys that cannot be checked (503 auth_unavailable).
READ = (*ANY_ROUTE, 401, 403, 429, 503)
CHANGE = (*READ, 403)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        out[status] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        if status in _ERROR_HEADERS:
            out[status]["headers"] = _ERROR_HEADERS[status]
    return out
