"""What a model deployment is: a validated, immutable spec. Rendering never sees an unchecked value."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from renderer import names, quantities
from renderer.credentials import check_env_value
from renderer.errors import RenderError

# repository[:port]/path@sha256:<64 hex>; a tag is refused so a manifest always pins one image.
_IMAGE_BY_DIGEST = re.compile(
    r"^(?P<repository>"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r")@(?P<digest>sha256:[0-9a-f]{64})$"
)
RESERVED_ENV = ("MODEL_NAME", "MODEL_VERSION")
MAX_REPLICAS = 20
_FREE_TEXT_MAX = 2048
_ENV_VALUE_MAX = 32 * 1024


def _check_free_text(value: str, what: str, max_length: int = _FREE_TEXT_MAX) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{what} is longer than {max_length} characters")
    for char in value:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029\ufeff" or 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{what} must be one line of printable text (found control character U+{code:04X})")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Frozen):
    """One key of a Kubernetes Secret in the model's namespace."""

    name: str
    key: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return names.check_dns_subdomain(value, "Secret name")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if len(value) > 253 or not names.SECRET_KEY.match(value):
            raise ValueError(f"Secret key {value!r} may only hold letters, digits, '-', '_' and '.'")
        return value


class Autoscaling(_Frozen):
    """HorizontalPodAutoscaler on CPU utilisation (relative to the CPU request)."""

    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=5, ge=1, le=100)
    cpu_target_percent: int = Field(default=80, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class DisruptionBudget(_Frozen):
    """PodDisruptionBudget: how many pods must stay up during voluntary disruptions (node drains)."""

    min_available: int = Field(default=1, ge=0)


class DeploymentSpec(_Frozen):
    model_name: str
    namespace: str
    # The endpoint's name: its Deployment, Service, overlay folder and Application. None means the
    # model's own name, which keeps the files of a model with one endpoint as they always were.
    endpoint: str | None = None
    model_version: str
    image: str
    run_id: str
    model_uri: str
    deployment_id: str
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    # None means "half the limit"; the validated spec always holds the derived value.
    cpu_request: str | None = None
    memory_request: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    container_port: int = Field(default=8080, ge=1, le=65535)
    managed_by: str = "mlops-control"
    autoscaling: Autoscaling | None = None
    disruption_budget: DisruptionBudget | None = None

    @classmethod
    def validated(cls, **fields: Any) -> DeploymentSpec:
        """Like the constructor, but every problem is a RenderError (what the service expects)."""
        try:
            return cls(**fields)
        except ValidationError as error:
            raise RenderError.from_validation_error(error) from None

    # ---- derived defaults ----------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _derive_requests(cls, data: Any) -> Any:
        # Requests default to half the limits: room to burst, and a scheduler that does not
        # reserve a whole node for an idle model. Invalid limits are reported by their own field.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("cpu_request") is None:
            data.pop("cpu_request", None)
            with contextlib.suppress(ValueError, TypeError):
                data["cpu_request"] = quantities.half_cpu(data.get("cpu_limit", "1"))
        if data.get("memory_request") is None:
            data.pop("memory_request", None)
            with contextlib.suppress(ValueError, TypeError):
                data["memory_request"] = quantities.half_memory(data.get("memory_limit", "1Gi"))
        return data

    # ---- field checks --------------------------------------------------------------------------

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        names.check_dns_label(value, "model_name")
        if not value[0].isalpha():
            # The Service is named after the model, and Service names must start with a letter.
            raise ValueError(f"model_name {value!r} must start with a letter (it names the model's Service)")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        names.check_dns_label(value, "endpoint")
        if not value[0].isalpha():
            raise ValueError(f"endpoint {value!r} must start with a letter (it names the endpoint's Service)")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return names.check_dns_label(value, "namespace")

    @field_validator("model_version")
    @classmethod
    def _model_version(cls, value: str) -> str:
        if not value:
            raise ValueError("model_version must not be empty")
        return names.check_label_value(value, "model_version")

    @field_validator("managed_by")
    @classmethod
    def _managed_by(cls, value: str) -> str:
        if not value:
            raise ValueError("managed_by must not be empty")
        return names.check_label_value(value, "managed_by")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE_BY_DIGEST.match(value):
            raise ValueError(
                f"image {value!r} must be referenced by digest: <repository>@sha256:<64 hex digits> (no tag)"
            )
        return value

    @field_validator("run_id", "model_uri", "deployment_id")
    @classmethod
    def _free_text(cls, value: str, info: Any) -> str:
        return _check_free_text(value, info.field_name)

    @field_validator("cpu_limit", "cpu_request")
    @classmethod
    def _cpu(cls, value: str | None, info: Any) -> str | None:
        if value is None:  # only when the limit itself is invalid; that field reports it
            return value
        try:
            quantities.cpu_millicores(value)
        except ValueError as error:
            raise ValueError(f"{info.field_name}: {error}") from None
        return value

    @field_validator("memory_limit", "memory_request")
    @classmethod
    def _memory(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        try:
            quantities.memory_bytes(value)
        except ValueError as error:
            raise ValueError(f"{info.field_name}: {error}") from None
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            check_env_key(key)
            if key in RESERVED_ENV:
                raise ValueError(f"env {key} is set by the platform and cannot be overridden")
            check_env_value_text(key, value)
            problem = check_env_value(key, value)
            if problem:
                raise ValueError(problem)
        return env

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, secret_env: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for key in secret_env:
            check_env_key(key)
            if key in RESERVED_ENV:
                raise ValueError(f"secret_env {key} is set by the platform and cannot be overridden")
        return secret_env

    @model_validator(mode="after")
    def _consistency(self) -> DeploymentSpec:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"{', '.join(both)} set in both env and secret_env; keep one")
        assert self.cpu_request is not None and self.memory_request is not None  # derived in _derive_requests
        if quantities.cpu_millicores(self.cpu_request) > quantities.cpu_millicores(self.cpu_limit):
            raise ValueError(f"cpu_request ({self.cpu_request}) exceeds cpu_limit ({self.cpu_limit})")
        if quantities.memory_bytes(self.memory_request) > quantities.memory_bytes(self.memory_limit):
            raise ValueError(f"memory_request ({self.memory_request}) exceeds memory_limit ({self.memory_limit})")
        if self.disruption_budget is not None:
            floor = self.autoscaling.min_replicas if self.autoscaling else self.replicas
            if self.disruption_budget.min_available >= floor:
                raise ValueError(
                    f"disruption_budget.min_available ({self.disruption_budget.min_available}) must be below the "
                    f"smallest replica count ({floor}), or no node could ever be drained"
                )
        return self

    # ---- values the templates need ---------------------------------------------------------------

    @property
    def endpoint_name(self) -> str:
        """What the endpoint's resources are called: its own name, or the model's."""
        return self.endpoint or self.model_name

    @property
    def named_endpoint(self) -> bool:
        """Whether the endpoint has a name of its own (one of possibly several of the model)."""
        return self.endpoint_name != self.model_name

    @property
    def image_repository(self) -> str:
        return self.image.partition("@")[0]

    @property
    def image_digest(self) -> str:
        return self.image.partition("@")[2]


def check_env_key(key: str) -> None:
    """Raise ValueError unless ``key`` can name an environment variable of the model's container."""
    if not names.C_IDENTIFIER.match(key):
        raise ValueError(f"env name {key!r} must be a C identifier (letters, digits, '_'; not starting with a digit)")


def check_env_value_text(key: str, value: str) -> None:
    """Raise ValueError unless ``value`` renders as one plain YAML scalar line (credentials aside)."""
    if len(value) > _ENV_VALUE_MAX:
        raise ValueError(f"env {key} is longer than {_ENV_VALUE_MAX} characters")
    if "\n" in value or "\r" in value:
        raise ValueError(f"env {key} must be a single line")
    if value.startswith(("---", "...")):
        raise ValueError(f"env {key} must not start with a YAML document marker ('---' or '...')")
    if value:
        _check_free_text(value, f"env {key}", _ENV_VALUE_MAX)
