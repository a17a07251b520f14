"""Journal records -> API views (the deployment resource clients poll)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from control_api.api.schemas import CanaryView, DeploymentView, Endpoints, StepView
from control_api.journal.store import DeploymentRecord
from control_api.pipeline.outputs import (
    COMMIT,
    DEPLOYMENT_URL,
    EXPERIMENT_NAME,
    EXTERNAL_IP,
    IMAGE_URI,
    MODEL_VERSION,
    PULL_REQUEST_URL,
    RUN_ID,
    TARGET,
)
from control_api.pipeline.steps import canary


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def deployment_view(record: DeploymentRecord) -> DeploymentView:
    out = record.outputs
    end = record.finished_at
    duration = (end - record.created_at).total_seconds() if end else None
    base_url = out.get(DEPLOYMENT_URL)
    v2_model = f"{base_url}/v2/models/{quote(record.model_name, safe='')}" if base_url else None
    endpoints = Endpoints(
        predict=f"{base_url}/predict" if base_url else None,
        health=f"{base_url}/health" if base_url else None,
        metadata=f"{base_url}/metadata" if base_url else None,
        v2_infer=f"{v2_model}/infer" if v2_model else None,
        v2_model=v2_model,
        v2_ready=f"{v2_model}/ready" if v2_model else None,
    )
    steps = [
        StepView(
            name=s.name,
            status=s.status,
            started_at=_iso(s.started_at),
            finished_at=_iso(s.finished_at),
            attempts=s.attempts,
            message=s.message,
            duration_seconds=round((s.finished_at - s.started_at).total_seconds(), 3)
            if s.started_at and s.finished_at
            else None,
        )
        for s in record.steps
    ]
    return DeploymentView(
        deployment_id=record.id,
        job_id=record.id,
        kind=record.kind,
        model_name=record.model_name,
        endpoint=record.endpoint,
        model_version=out.get(MODEL_VERSION),
        run_id=out.get(RUN_ID),
        status=record.status,
        namespace=record.namespace,
        created_at=record.created_at.isoformat(),
        updated_at=record.updated_at.isoformat(),
        finished_at=_iso(record.finished_at),
        deployment_time_seconds=round(duration, 3) if duration is not None else None,
        duration_seconds=round(duration, 3) if duration is not None else None,
        requested_by=record.requested_by,
        experiment_name=out.get(EXPERIMENT_NAME),
        steps=steps,
        error=record.error,
        image_uri=out.get(IMAGE_URI),
        ecr_image=out.get(IMAGE_URI),
        inference_url=endpoints.predict,
        endpoints=endpoints,
        deployment_url=base_url,
        external_ip=out.get(EXTERNAL_IP),
        commit=out.get(COMMIT),
        pull_request_url=out.get(PULL_REQUEST_URL),
        target=out.get(TARGET),
        canary=_canary_view(record),
    )


def _canary_view(record: DeploymentRecord) -> CanaryView | None:
    step = record.step(canary.CanaryStep.name)
    strategy = record.request.get("strategy")
    if step is None or not strategy:
        return None
    out = step.outputs or {}
    weights = [w for w in strategy["steps"] if w < 100]
    index = out.get(canary.STEP_INDEX)
    stable = out.get(canary.STABLE) or {}
    return CanaryView(
        phase=out.get(canary.OUTCOME) or out.get(canary.PHASE) or "pending",
        steps=list(strategy["steps"]),
        step=f"{index + 1}/{len(weights)}" if index is not None else None,
        weight=weights[index] if index is not None else None,
        split=out.get(canary.SPLIT),
        stable_version=stable.get("version"),
        stable_commit=stable.get("sha"),
        canary_version=record.outputs.get(MODEL_VERSION),
        evidence=list(out.get(canary.EVIDENCE) or []),
        abort_reason=out.get(canary.ABORT_REASON),
        steered_by=out.get(canary.MANUAL_BY),
    )
