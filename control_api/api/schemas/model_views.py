"""Response bodies of the model routes: registered models, what a target serves, and history."""

from __future__ import annotations

from pydantic import BaseModel, Field


class _RegisteredModelFields(BaseModel):
    name: str
    description: str
    creation_timestamp: str | None
    last_updated_timestamp: str | None
    latest_version: str | None
    tags: dict[str, str]


class ModelSummary(_RegisteredModelFields):
    aliases: dict[str, str]


class ModelList(BaseModel):
    models: list[ModelSummary]
    total: int


class ModelVersionView(BaseModel):
    version: str
    run_id: str | None
    status: str | None
    current_stage: str | None
    creation_timestamp: str | None
    last_updated_timestamp: str | None
    aliases: list[str]
    description: str
    source: str | None
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]


class ServedView(BaseModel):
    """What the target really runs for the model's endpoint in one namespace."""

    namespace: str
    endpoint: str = Field(description="The endpoint: the model's name unless the deploy named another.")
    version: str | None
    commit: str | None = Field(description="The deploy commit whose manifests run.")
    image: str | None
    revision: str | None = Field(description="The git revision the target applied last (Argo CD's history).")
    healthy: bool | None
    url: str | None = Field(default=None, description="Where the endpoint answers, as the target reports it.")
    how: str = Field(description="How it got there: a deploy at the branch head, or a rollback outside git.")
    synced_at: str | None
    initiated_by: str | None


class DriftView(BaseModel):
    """Present when the target serves something other than the branch's newest deploy commit."""

    branch: str
    branch_commit: str
    branch_version: str | None
    message: str


class ModelDetail(_RegisteredModelFields):
    versions: list[ModelVersionView]
    served: ServedView | None = None
    drift: DriftView | None = None


class EndpointView(BaseModel):
    """One endpoint: the model and version its branch head says, and what its target really serves."""

    namespace: str
    endpoint: str
    model_name: str
    version: str | None = Field(description="The version the newest commit of the endpoint's folder deploys.")
    commit: str = Field(description="That commit.")
    served: ServedView | None = Field(description="What the target runs for it; null when nothing runs yet.")
    drift: DriftView | None = None


class EndpointList(BaseModel):
    endpoints: list[EndpointView]
    total: int


class HistoryCommit(BaseModel):
    sha: str
    subject: str
    action: str
    version: str | None
    image: str | None
    run_id: str | None
    deployment_id: str | None
    requested_by: str | None
    author: str
    date: str


class TargetSync(BaseModel):
    """One entry of what the target applied (Argo CD's status.history), with the version it ran."""

    id: int
    revision: str
    commit: str | None
    version: str | None
    deployed_at: str | None
    initiated_by: str | None
    automated: bool
    kind: str = Field(description="'rollback' when it went back to an older deploy commit, else 'sync'.")


class ModelHistory(BaseModel):
    model_name: str
    endpoint: str
    namespace: str
    commits: list[HistoryCommit]
    target_syncs: list[TargetSync] = Field(
        default_factory=list,
        description="What the target applied, newest first; shows rollbacks made outside git (the Argo CD UI).",
    )
