"""Request bodies of the management API: what clients send to ``POST /mlops/deploy``.

Refusals name the rule that broke (see ``rules``). CPU and memory quantities are parsed by the
renderer's parser (renderer.quantities), the one the manifests are checked with; the bounds here are
the API's policy on top.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from control_api.api.schemas.rules import LABEL_DOC, dns1123_label, env_key
from renderer import quantities as render_quantities
from renderer.credentials import check_env_value
from renderer.spec import MAX_REPLICAS, check_env_value_text

SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.py$")

MAX_SCRIPT_BYTES = 1024 * 1024
MAX_ENV_VALUE_CHARS = 4096
MAX_CPU_MILLICORES = 16000
MIN_MEMORY_BYTES = 64 * 2**20
MAX_MEMORY_BYTES = 64 * 2**30


def _endpoint_label(value: str | None) -> str | None:
    return None if value is None else dns1123_label(value, "endpoint_name")


EndpointName = Annotated[
    str | None,
    AfterValidator(_endpoint_label),
    Field(
        description=(
            "The endpoint to serve the model at: its own Deployment, Service, URL and Argo CD Application. "
            "A DNS-1123 label; default: the model's name. One model may serve different versions at "
            "different endpoints."
        ),
        json_schema_extra=LABEL_DOC,
    ),
]


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


class TrainingResourcesRequest(BaseModel):
    """What one training asks for; the training backend holds it to the service's bounds at admission."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = Field(default=None, examples=["2"], description="CPU of the training (a Kubernetes quantity).")
    memory: str | None = Field(
        default=None, examples=["4Gi"], description="Memory of the training (a Kubernetes quantity)."
    )
    gpu: int = Field(default=0, ge=0, description="GPUs (nvidia.com/gpu) of the training.")
    timeout_seconds: int | None = Field(default=None, ge=1, description="Wall-clock limit of the training.")


def checked_environment_vars(value: dict[str, str]) -> dict[str, str]:
    """Variable names are env keys; values are short text and never a credential (that is secret_env)."""
    for key, item in value.items():
        env_key(key)
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


def checked_secret_env(value: dict[str, SecretKeyRef]) -> dict[str, SecretKeyRef]:
    for key in value:
        env_key(key)
    return value


ServingEnvironment = Annotated[
    dict[str, str], AfterValidator(checked_environment_vars), Field(description="The model server's variables.")
]
SecretEnvironment = Annotated[
    dict[str, SecretKeyRef],
    AfterValidator(checked_secret_env),
    Field(
        description=(
            "Serving env vars read from Kubernetes Secrets: {VAR: {name, key}}. Never written to git as values."
        )
    ),
]


def journaled_serving(
    config: DeploymentConfig | None,
    replicas: int,
    environment_vars: dict[str, str],
    secret_env: dict[str, SecretKeyRef],
    endpoint_name: str | None,
    strategy: CanaryStrategy | None = None,
) -> dict[str, Any]:
    """The journal fields of what a deploy and a version deploy both ask of serving."""
    config = config or DeploymentConfig()
    autoscaling = {"autoscaling": config.autoscaling.model_dump()} if config.autoscaling else {}
    return {
        "environment_vars": environment_vars,
        "secret_env": {k: v.model_dump() for k, v in secret_env.items()},
        "deployment_config": {
            "replicas": replicas,
            "memory_limit": config.memory_limit,
            "cpu_limit": config.cpu_limit,
            **autoscaling,
        },
        # Absent when not asked for, so requests journaled before endpoints compare equal.
        **({"endpoint_name": endpoint_name} if endpoint_name else {}),
        **({"strategy": strategy.model_dump()} if strategy else {}),
    }


class CanaryAnalysis(BaseModel):
    """What the canary's own model servers must show over each step's interval to go on."""

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "Highest share of the canary's inference answers that may be errors (any status but 2xx), "
            "over the interval."
        ),
    )
    max_latency_ms: float | None = Field(
        default=None, gt=0, le=600_000, description="Highest latency at `latency_percentile`, in milliseconds."
    )
    latency_percentile: float = Field(
        default=99, gt=0, lt=100, description="The percentile `max_latency_ms` holds for."
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        le=10_000_000,
        description=(
            "Fewest inference requests the canary must have answered in the interval for a verdict; "
            "with fewer the analysis waits another interval, up to five times, then aborts."
        ),
    )


class CanaryStrategy(BaseModel):
    """A release in weighted steps: each step is a commit, synced and awaited, then analysed."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["canary"]
    steps: list[int] = Field(
        min_length=1,
        max_length=20,
        description=(
            "Canary weights in percent, increasing. A step of 100, or the end of the list, makes the new "
            "version the stable one and removes the old."
        ),
    )
    interval_seconds: float = Field(
        default=60, ge=1, le=86_400, description="How long each step runs before its analysis decides."
    )
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= weight <= 100 for weight in steps):
            raise PydanticCustomError("canary_steps", "each canary step is a weight from 1 to 100 percent")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise PydanticCustomError("canary_steps", "canary steps must increase")
        if steps[0] == 100:
            raise PydanticCustomError("canary_steps", "a canary needs at least one step below 100 percent")
        return steps


Strategy = Annotated[
    CanaryStrategy | None,
    Field(
        default=None,
        description=(
            "How the new version replaces the endpoint's current one. Absent: at once, by a rolling "
            "update. `canary`: beside it, in weighted steps (see docs/canary.md)."
        ),
    ),
]


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
    environment_vars: ServingEnvironment = Field(default_factory=dict)
    secret_env: SecretEnvironment = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    deployment_config: DeploymentConfig | None = None
    training: TrainingResourcesRequest | None = Field(
        default=None, description="Resources of the training; bounded by the training backend's settings."
    )
    namespace: str | None = Field(
        default=None,
        description="One of api.allowed_namespaces; default api.default_namespace.",
        json_schema_extra=LABEL_DOC,
    )
    endpoint_name: EndpointName = None
    strategy: Strategy = None
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
            raise PydanticCustomError("base64", "must be valid base64 (standard alphabet, with padding)") from None
        if len(raw) > MAX_SCRIPT_BYTES:
            raise PydanticCustomError(
                "max_size", "the decoded script must be at most {max} bytes", {"max": MAX_SCRIPT_BYTES}
            )
        if not raw.strip():
            raise PydanticCustomError("not_empty", "the decoded script is empty")
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PydanticCustomError("utf8", "the decoded script must be UTF-8 text") from None
        try:
            compile(source, "train.py", "exec")
        except SyntaxError as exc:
            raise PydanticCustomError(
                "python_syntax",
                "the script is not valid Python: {msg} (line {line})",
                {"msg": exc.msg, "line": exc.lineno},
            ) from None
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
                    "{item!r} is not allowed: only requirement specifiers such as 'scikit-learn==1.5.2' "
                    "(no pip options, URLs or paths)",
                    {"item": text},
                )
            try:
                parsed = Requirement(text)
            except InvalidRequirement as exc:
                raise PydanticCustomError(
                    "requirement_specifier",
                    "{item!r} is not a requirement specifier: {why}",
                    {"item": text, "why": str(exc)},
                ) from None
            if parsed.url:
                raise PydanticCustomError(
                    "requirement_specifier", "{item!r}: direct URL references are not allowed", {"item": text}
                )
            cleaned.append(text)
        return cleaned

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
        return {
            "script_content": self.script_content,
            "script_name": self.script_name,
            "model_name": self.model_name,
            "experiment_name": self.experiment_name,
            "requirements": self.requirements,
            "tags": self.tags,
            "namespace": namespace,
            **journaled_serving(
                self.deployment_config,
                self.effective_replicas(),
                self.environment_vars,
                self.secret_env,
                self.endpoint_name,
                self.strategy,
            ),
            # Absent when not asked for, so requests journaled before this field compare equal.
            **({"training": self.training.model_dump()} if self.training else {}),
        }


class VersionDeployRequest(BaseModel):
    """``POST /mlops/models/{name}/versions/{version}/deploy``: serve a registered version as it is."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(default=None, max_length=63)
    endpoint_name: EndpointName = None
    deployment_config: DeploymentConfig | None = None
    environment_vars: ServingEnvironment = Field(default_factory=dict)
    secret_env: SecretEnvironment = Field(default_factory=dict)
    strategy: Strategy = None

    def to_journal(self, model_name: str, version: str, namespace: str) -> dict[str, Any]:
        replicas = (self.deployment_config.replicas if self.deployment_config else None) or 1
        return {
            "model_name": model_name,
            "version": version,
            "namespace": namespace,
            **journaled_serving(
                self.deployment_config,
                replicas,
                self.environment_vars,
                self.secret_env,
                self.endpoint_name,
                self.strategy,
            ),
        }
