"""Response bodies of the deployment and system routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StepView(BaseModel):
    name: str
    status: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    message: str | None
    duration_seconds: float | None = None


class Endpoints(BaseModel):
    predict: str | None = None
    health: str | None = None
    metadata: str | None = None
    # Open Inference Protocol (V2) routes of the same model server, for tritonclient/kserve clients.
    v2_infer: str | None = None
    v2_model: str | None = None
    v2_ready: str | None = None


class CanaryView(BaseModel):
    """Where a canary release stands, and the analysis of each step it has run."""

    phase: str = Field(
        description=(
            "start, step (committing a weight), rollout, analysis, promote, promoting, abort, aborting; "
            "`promoted` or `aborted` once it ended"
        )
    )
    steps: list[int]
    step: str | None = Field(default=None, description="The step running or last run, as `i/n` of the steps below 100.")
    weight: int | None = None
    split: str | None = Field(default=None, description="The replica ratio the step's weight became.")
    stable_version: str | None = None
    stable_commit: str | None = None
    canary_version: str | None = None
    evidence: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per analysed step: requests, errors, error_rate, latency_ms, outcome, reasons, thresholds.",
    )
    abort_reason: str | None = None
    steered_by: str | None = Field(default=None, description="Who promoted or aborted it by hand.")


class DeploymentView(BaseModel):
    deployment_id: str
    job_id: str
    kind: str
    model_name: str
    endpoint: str = Field(description="The endpoint the operation changes: the model's name unless it named one.")
    model_version: str | None
    run_id: str | None
    status: str
    namespace: str
    created_at: str
    updated_at: str
    finished_at: str | None
    deployment_time_seconds: float | None
    duration_seconds: float | None
    requested_by: str
    experiment_name: str | None
    steps: list[StepView]
    error: dict[str, Any] | None
    image_uri: str | None
    ecr_image: str | None
    inference_url: str | None
    endpoints: Endpoints
    deployment_url: str | None
    external_ip: str | None
    commit: str | None
    pull_request_url: str | None = None
    target: str | None = None
    canary: CanaryView | None = Field(default=None, description="Present for a canary release.")


class DeploymentPage(BaseModel):
    items: list[DeploymentView]
    total: int
    limit: int
    offset: int


# Bodies of routes without a typed response_model: declared in the OpenAPI document, not enforced.


class HealthBody(BaseModel):
    status: str
    version: str


class ReadyBody(BaseModel):
    status: str = Field(description="ready | not_ready")
    reason: str | None = None


class ComponentHealth(BaseModel):
    status: str = Field(description="healthy | unhealthy")
    latency_ms: float
    error: str | None = None
    detail: str | None = Field(default=None, description="What a check found, for example how training is sandboxed")


class PlatformStatus(BaseModel):
    status: str = Field(description="healthy when every component is")
    timestamp: str
    target: str
    components: dict[str, ComponentHealth]
