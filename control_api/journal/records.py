"""The journal's plain records, handed to the rest of the service (no lazy loading outside a session),
and the statuses a deployment and its steps go through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """Everything we store is UTC: SQLite hands it back naive, PostgreSQL in the server's own time zone."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class DeploymentStatus:
    PENDING = "pending"
    REGISTERED = "registered"
    DEPLOYED = "deployed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    AWAITING_REVIEW = "awaiting_review"
    ROLLED_BACK = "rolled_back"
    UNDEPLOYED = "undeployed"
    # A cancel was asked for: the orchestrator interrupts the running step and undoes what the deploy made.
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    # States in which nothing is running and nothing will run without a new request or a retry.
    FINAL = frozenset({REGISTERED, DEPLOYED, FAILED, TIMED_OUT, ROLLED_BACK, UNDEPLOYED, CANCELLED})


POLL_PREFIX = "poll_"  # outputs that only a waiting step's next look needs


class StepStatus:
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StepRecord:
    name: str
    position: int
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None
    outputs: dict[str, Any]
    log_tail: str | None


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    kind: str
    model_name: str
    namespace: str
    status: str
    request: dict[str, Any]
    endpoint: str  # the endpoint the operation changes: the model's name unless the request named one
    requested_by: str
    idempotency_key: str | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)

    @property
    def outputs(self) -> dict[str, Any]:
        """Every step's outputs, merged in step order (a later step's value wins)."""
        return self.outputs_through(None)

    def outputs_through(self, step_name: str | None) -> dict[str, Any]:
        """The outputs of the steps up to and including ``step_name`` (all steps for None), merged in
        step order: what that step sees when it runs. This is the one place outputs are merged."""
        merged: dict[str, Any] = {}
        for step in self.steps:
            merged.update(step.outputs or {})
            if step.name == step_name:
                break
        return merged

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def is_final(self) -> bool:
        return self.status in DeploymentStatus.FINAL
