"""GET /mlops/deployments/{id}/events: the deployment's journal as a Server-Sent Events stream.

Past events are replayed first, then live ones follow until the deployment ends (a final status), through
``awaiting_review`` too: a reviewed deploy goes on once its pull request is merged, and the stream shows
that; the stream then ends with ``event: end`` carrying the deployment view. Each journal
event keeps its journal id as the SSE ``id`` so a reconnecting client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from control_api.api.deps import ServicesDep, require_namespace_access
from control_api.api.routes.views import deployment_view
from control_api.api.schemas import MAX_EVENT_ID, NO_NUL, READ, error_responses
from control_api.errors import InvalidRequestError
from control_api.journal.store import DeploymentRecord, Journal

router = APIRouter(prefix="/mlops/deployments", tags=["deployments"])

POLL_INTERVAL_SECONDS = 0.3
# Proxies close idle connections; an SSE comment line every so often keeps a quiet stream open.
KEEPALIVE_SECONDS = 15.0
# Browsers reconnect after this many milliseconds when the connection drops.
RECONNECT_MILLISECONDS = 2000
EVENT_BATCH = 500


def stream_is_over(record: DeploymentRecord) -> bool:
    return record.is_final


def format_event(event: str, data: Any, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    # json.dumps never emits a raw newline, so the payload is always one data line.
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), default=str)}")
    return "\n".join(lines) + "\n\n"


def journal_event_payload(event: dict[str, Any]) -> dict[str, Any]:
    payload = {"id": event["id"], "at": event["at"], "step": event["step"]}
    payload.update(event["data"] or {})
    return payload


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    raw = last_event_id if last_event_id not in (None, "") else after
    if raw is None:
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError(
            "Last-Event-ID must be the integer id of an event from this stream",
            code="validation_error",
            details=[{"field": "Last-Event-ID", "rule": "integer", "message": "must be an integer"}],
        ) from None
    if value < 0:
        raise InvalidRequestError(
            "Last-Event-ID must not be negative",
            code="validation_error",
            details=[{"field": "Last-Event-ID", "rule": "non_negative", "message": "must be >= 0"}],
        )
    if value > MAX_EVENT_ID:
        raise InvalidRequestError(
            "Last-Event-ID is larger than any event id",
            code="validation_error",
            details=[{"field": "Last-Event-ID", "rule": "max_event_id", "message": f"must be <= {MAX_EVENT_ID}"}],
        )
    return value


async def follow_journal(
    journal: Journal, deployment_id: str, after_id: int, request: Request, poll_interval: float = POLL_INTERVAL_SECONDS
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
    cursor = after_id
    last_sent = time.monotonic()
    while True:
        # The record is read before the events: a status change and its event commit together, so when
        # this record is already final, the read below is guaranteed to include the final status event.
        record = await run_in_threadpool(journal.get, deployment_id)
        events = await run_in_threadpool(journal.events, deployment_id, cursor, EVENT_BATCH)
        for event in events:
            cursor = event["id"]
            yield format_event(event["type"], journal_event_payload(event), event_id=event["id"])
        if events:
            last_sent = time.monotonic()
        if len(events) == EVENT_BATCH:
            continue  # more history is waiting; do not sleep on a replay
        if stream_is_over(record):
            yield format_event("end", deployment_view(record).model_dump(mode="json"))
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(poll_interval)


@router.get(
    "/{deployment_id}/events",
    summary="Server-Sent Events: step transitions, status changes and log lines, replayed then followed live",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "event: step | log | status, then end"},
        **error_responses(*READ, 404, 422, 503),
    },
)
async def deployment_events(
    deployment_id: Annotated[str, Path(pattern=NO_NUL)],
    request: Request,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0, le=MAX_EVENT_ID, description="Resume after this event id (for clients that cannot set Last-Event-ID)"
        ),
    ] = None,
) -> StreamingResponse:
    journal = services.journal
    # Raises NotFoundError (404 in the standard error format) before any streaming starts.
    record = await run_in_threadpool(journal.get, deployment_id)
    require_namespace_access(request, record.namespace)
    after_id = _resume_point(last_event_id, after)
    return StreamingResponse(
        follow_journal(journal, deployment_id, after_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
