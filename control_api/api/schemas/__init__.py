"""Models of the management API, one module per concern; every name is importable from here.

``requests``: request bodies. ``views`` and ``model_views``: response bodies. ``error_table``: the
documented error answers of the OpenAPI document. ``rules``: field rules shared with path parameters.
``limits``: bounds on path and query values.
"""

from control_api.api.schemas.error_table import ANY_ROUTE, CHANGE, READ, ErrorBody, ErrorInfo, error_responses
from control_api.api.schemas.limits import MAX_EVENT_ID, MAX_INT64, NO_NUL
from control_api.api.schemas.model_views import (
    DriftView,
    EndpointList,
    EndpointView,
    HistoryCommit,
    ModelDetail,
    ModelHistory,
    ModelList,
    ModelSummary,
    ModelVersionView,
    ServedView,
    TargetSync,
)
from control_api.api.schemas.requests import (
    MAX_CPU_MILLICORES,
    MAX_ENV_VALUE_CHARS,
    MAX_MEMORY_BYTES,
    MAX_SCRIPT_BYTES,
    MIN_MEMORY_BYTES,
    SCRIPT_NAME,
    AutoscalingConfig,
    DeploymentConfig,
    DeployRequest,
    EndpointName,
    SecretKeyRef,
    VersionDeployRequest,
)
from control_api.api.schemas.rules import LABEL_DOC, dns1123_label, env_key
from control_api.api.schemas.views import (
    CanaryView,
    ComponentHealth,
    DeploymentPage,
    DeploymentView,
    Endpoints,
    HealthBody,
    PlatformStatus,
    ReadyBody,
    StepView,
)

__all__ = [
    "ANY_ROUTE",
    "CHANGE",
    "LABEL_DOC",
    "MAX_CPU_MILLICORES",
    "MAX_ENV_VALUE_CHARS",
    "MAX_EVENT_ID",
    "MAX_INT64",
    "MAX_MEMORY_BYTES",
    "MAX_SCRIPT_BYTES",
    "MIN_MEMORY_BYTES",
    "NO_NUL",
    "READ",
    "SCRIPT_NAME",
    "AutoscalingConfig",
    "CanaryView",
    "ComponentHealth",
    "DeployRequest",
    "DeploymentConfig",
    "DeploymentPage",
    "DeploymentView",
    "DriftView",
    "EndpointList",
    "EndpointName",
    "EndpointView",
    "Endpoints",
    "ErrorBody",
    "ErrorInfo",
    "HealthBody",
    "HistoryCommit",
    "ModelDetail",
    "ModelHistory",
    "ModelList",
    "ModelSummary",
    "ModelVersionView",
    "PlatformStatus",
    "ReadyBody",
    "SecretKeyRef",
    "ServedView",
    "StepView",
    "TargetSync",
    "VersionDeployRequest",
    "dns1123_label",
    "env_key",
    "error_responses",
]
