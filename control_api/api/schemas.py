"""Request and response models of the management API.

Validation errors carry a rule name (``PydanticCustomError`` type) so a client sees which field broke
which rule, for example ``{"field": "model_name", "rule": "dns1123_label"}``. What the manifests are
made of (names, quantities, environment values, replicas) is checked by the renderer's own rules
(renderer.names, renderer.quantities, renderer.spec); the limits here are the API's policy on top.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from renderer import names as render_names
from renderer import quantities as render_quantities
from renderer.credentials import check_env_value
from renderer.spec import MAX_REPLICAS, RESERVED_ENV, check_env_key, check_env_value_text

# What the validators below accept, stated in the OpenAPI document (json_schema_extra: documented only, so
# a refusal still names the rule that broke, e.g. dns1035_label).
LABEL_DOC = {"pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.py$")

MAX_SCRIPT_BYTES = 1024 * 1024
MAX_ENV_VALUE_CHARS = 4096
MAX_CPU_MILLICORES = 16000
MIN_MEMORY_BYTES = 64 * 2**20
MAX_MEMORY_BYTES = 64 * 2**30
# Numbers that reach the journal's queries are bounded by their column types, so larger ones are a 422 and
# never reach the database (SQLite's driver raises OverflowError past 64 bits; PostgreSQL refuses a bigint
# beyond its INTEGER event ids): offsets are 64-bit, event ids 32-bit.
MAX_INT64 = 2**63 - 1
MAX_EVENT_ID = 2**31 - 1
# PostgreSQL text cannot hold NUL, so no stored id, name or status has one; a lookup with one failed there
# (DataError, a 500). Path and query strings that reach the journal refuse it (422).
NO_NUL = r"^[^\x00]*$"


def dns1123_label(value: str, what: str) -> str:
    if value[:1].isdigit():
        raise PydanticCustomError(
            "dns1035_label", "{what} must start with a letter (it names a Kubernetes Service)", {"what": what}
        )
    if len(value) > 63:
        raise PydanticCustomError(
            "max_length_63", "{what} must be at most 63 characters (got {n})", {"what": what, "n": len(value)}
        )
    try:
        render_names.check_dns_label(value, what)
    except ValueError as error:
        raise PydanticCustomError("dns1123_label", "{why}", {"why": str(error)}) from None
    return value


def _env_key(key: str) -> None:
    if len(key) > 128:
        raise PydanticCustomError(
            "env_key", "environment variable name {key!r} is longer than 128 characters", {"key": key[:40]}
        )
    try:
        check_env_key(key)
    except ValueError as error:
        raise PydanticCustomError("env_key", "{why}", {"why": str(error)}) from None
    if key in RESERVED_ENV:
        raise PydanticCustomError("env_reserved", "{key} is set by the platform and cannot be overridden", {"key": key})


class SecretKeyRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Kubernetes Secret name")
    key: str = Field(max_length=253, pattern=r"^[-._A-Za-z0-9]+$", description="Key in the Secret")


class AutoscalingConfig(BaseModel):
    """A HorizontalPodAutoscaler on CPU utilisation (relative to the CPU request, half the CPU limit)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    target_cpu_utilization: int = Field(default=80, ge=1, le=100, description="Percent of the CPU request")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise PydanticCustomError(
                "autoscaling_bounds",
                "min_replicas ({low}) exceeds max_replicas ({high})",
                {"low": self.min_replicas, "high": self.max_replicas},
            )
        return self


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)
    memory_limit: str | None = Field(default=None, examples=["1Gi"])
    cpu_limit: str | None = Field(default=None, examples=["500m"])
    autoscaling: AutoscalingConfig | None = Field(
        default=None, description="Scale between min_replicas and max_replicas on CPU; replicas is then not used."
    )

    @field_validator("cpu_limit")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            millicores = render_quantities.cpu_millicores(value)
        except ValueError as error:
            raise PydanticCustomError("cpu_quantity", "{why}", {"why": str(error)}) from None
        if not 10 <= millicores <= MAX_CPU_MILLICORES:
            raise PydanticCustomError(
                "cpu_bounds", "must be between 10m and {max} cores", {"max": MAX_CPU_MILLICORES // 1000}
            )
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            amount = render_quantities.memory_bytes(value)
        except ValueError as error:
            raise PydanticCustomError("memory_quantity", "{why}", {"why": str(error)}) from None
        if not MIN_MEMORY_BYTES <= amount <= MAX_MEMORY_BYTES:
            raise PydanticCustomError("memory_bounds", "must be between 64Mi and 64Gi")
        return value


class DeployRequest(BaseModel):
    """What the platform's existing clients send to ``POST /mlops/deploy``."""

    model_config = ConfigDict(extra="forbid")

    script_content: str = Field(
        description="The training script, base64-encoded.", json_schema_extra={"format": "byte"}
    )
    script_name: str = Field(default="train.py", max_length=128)
    model_name: str = Field(
        description="Registered model name; a DNS-1123 label (it names Kubernetes objects).",
        json_schema_extra=LABEL_DOC,
    )
    experiment_name: str | None = Field(default=None, max_length=256)
    requirements: list[str] = Field(default_factory=list, max_length=200)
    environment_vars: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretKeyRef] = Field(
        default_factory=dict,
        description="Serving env vars read from Kubernetes Secrets: {VAR: {name, key}}. Never written to git as values.",
    )
    tags: dict[str, str] = Field(default_factory=dict)
    deployment_config: DeploymentConfig | None = None
    namespace: str | None = Field(
        default=None,
        description="One of api.allowed_namespaces; default api.default_namespace.",
        json_schema_extra=LABEL_DOC,
    )
    # Older clients send these two at the top level.
    replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return dns1123_label(value, "model_name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else dns1123_label(value, "namespace")

    @field_validator("script_name")
    @classmethod
    def _script_name(cls, value: str) -> str:
        if not SCRIPT_NAME.match(value):
            raise PydanticCustomError("script_name", "must be a plain file name ending in .py, without folders")
        return value

    @field_validator("script_content")
    @classmethod
    def _script_content(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("base64", "must be valid base64 (standard alphabet, with padding)")
        if len(raw) > MAX_SCRIPT_BYTES:
            raise PydanticCustomError(
                "max_size", "the decoded script must be at most {max} bytes", {"max": MAX_SCRIPT_BYTES}
            )
        if not raw.strip():
            raise PydanticCustomError("not_empty", "the decoded script is empty")
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PydanticCustomError("utf8", "the decoded script must be UTF-8 text")
        try:
            compile(source, "train.py", "exec")
        except SyntaxError as exc:
            raise PydanticCustomError(
                "python_syntax",
                "the script is not valid Python: {msg} (line {line})",
                {"msg": exc.msg, "line": exc.lineno},
            )
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        cleaned = []
        for item in value:
            text = item.strip()
            if not text:
                continue
            if text.startswith("-") or "://" in text or text.startswith((".", "/", "~")):
                raise PydanticCustomError(
                    "requirement_specifier",
                    "{item!r} is not allowed: only requirement specifiers such as 'scikit-learn==1.5.2' (no pip options, URLs or paths)",
                    {"item": text},
                )
            try:
                parsed = Requirement(text)
            except InvalidRequirement as exc:
                raise PydanticCustomError(
                    "requirement_specifier",
                    "{item!r} is not a requirement specifier: {why}",
                    {"item": text, "why": str(exc)},
                )
            if parsed.url:
                raise PydanticCustomError(
                    "requirement_specifier", "{item!r}: direct URL references are not allowed", {"item": text}
                )
            cleaned.append(text)
        return cleaned

    @field_validator("environment_vars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            _env_key(key)
            if len(item) > MAX_ENV_VALUE_CHARS:
                raise PydanticCustomError(
                    "env_value",
                    "value of {key} must be at most {max} characters",
                    {"key": key, "max": MAX_ENV_VALUE_CHARS},
                )
            # A credential is refused first: its message points to secret_env, which is the fix.
            why = check_env_value(key, item)
            if why:
                raise PydanticCustomError("credential_in_env", "{why}", {"why": why})
            try:
                check_env_value_text(key, item)
            except ValueError as error:
                raise PydanticCustomError("env_value", "{why}", {"why": str(error)}) from None
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, SecretKeyRef]) -> dict[str, SecretKeyRef]:
        for key in value:
            _env_key(key)
        return value

    @field_validator("experiment_name")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        # One line of printable text: it is shown in MLflow's UI and stored in the journal, and
        # PostgreSQL text cannot hold NUL at all.
        if value is not None and (not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise PydanticCustomError("experiment_name", "must be non-blank text without control characters")
        # A name that reads as a path ("." "..", "a/b") is refused: the service names experiment folders.
        if value is not None and (set(value.strip()) <= {"."} or "/" in value or "\\" in value):
            raise PydanticCustomError("experiment_name", "must be a name, not a path: no '/', '\\', and not only dots")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not key or len(key) > 250 or len(item) > 5000 or key.startswith("mlops."):
                raise PydanticCustomError(
                    "tag",
                    "tag {key!r}: keys are 1-250 characters and may not start with 'mlops.'; values at most 5000",
                    {"key": key},
                )
            if "\x00" in key or "\x00" in item:
                raise PydanticCustomError(
                    "tag", "tag {key!r}: keys and values may not contain NUL characters", {"key": key}
                )
        return value

    @model_validator(mode="after")
    def _replicas_agree(self) -> DeployRequest:
        config_replicas = self.deployment_config.replicas if self.deployment_config else None
        if self.replicas is not None and config_replicas is not None and self.replicas != config_replicas:
            raise PydanticCustomError("replicas_conflict", "replicas and deployment_config.replicas disagree")
        return self

    # ---- normalised view ------------------------------------------------------------------------

    def effective_replicas(self) -> int:
        if self.deployment_config and self.deployment_config.replicas is not None:
            return self.deployment_config.replicas
        return self.replicas or 1

    def to_journal(self, namespace: str) -> dict[str, Any]:
        config = self.deployment_config or DeploymentConfig()
        autoscaling = {"autoscaling": config.autoscaling.model_dump()} if config.autoscaling else {}
        return {
            "script_content": self.script_content,
            "script_name": self.script_name,
            "model_name": self.model_name,
            "experiment_name": self.experiment_name,
            "requirements": self.requirements,
            "environment_vars": self.environment_vars,
            "secret_env": {k: v.model_dump() for k, v in self.secret_env.items()},
            "tags": self.tags,
            "namespace": namespace,
            "deployment_config": {
                "replicas": self.effective_replicas(),
                "memory_limit": config.memory_limit,
                "cpu_limit": config.cpu_limit,
                **autoscaling,
            },
        }


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


class DeploymentView(BaseModel):
    deployment_id: str
    job_id: str
    kind: str
    model_name: str
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


class DeploymentPage(BaseModel):
    items: list[DeploymentView]
    total: int
    limit: int
    offset: int


# ---- documented answers other than the happy path -----------------------------------------------
# Every 4xx and 5xx the service gives has the body of control_api.api.errors.error_response. Routes
# declare which of them they can give, so the OpenAPI document is a truthful contract
# (tests/security/test_openapi_fuzz.py checks every answer against it).


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


# ---- bodies of routes without a typed response_model (declared, not enforced) --------------------


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
    """What the target really runs for the model in one namespace."""

    namespace: str
    version: str | None
    commit: str | None = Field(description="The deploy commit whose manifests run.")
    image: str | None
    revision: str | None = Field(description="The git revision the target applied last (Argo CD's history).")
    healthy: bool | None
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
    namespace: str
    commits: list[HistoryCommit]
    target_syncs: list[TargetSync] = Field(
        default_factory=list,
        description="What the target applied, newest first; shows rollbacks made outside git (the Argo CD UI).",
    )
