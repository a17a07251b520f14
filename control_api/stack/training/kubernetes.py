"""Training backend ``kubernetes``: one Kubernetes Job per training, in a training image built and
pushed with the configured image builder, tracking to a remote MLflow server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control_api.errors import InvalidRequestError
from control_api.stack.training.kind import TrainingKind
from control_api.training.backends.validation import validate_training_backend

if TYPE_CHECKING:
    from control_api.pipeline.step import Step
    from control_api.services import Services
    from control_api.settings import Settings
    from control_api.training.backends.base import TrainingBackend


def admit(settings: Settings, request: dict[str, Any]) -> None:
    """Resources beyond the settings' bounds are refused (a 422 naming each field) before the deploy is
    created, with the same rule the backend applies again when it starts the Job."""
    from control_api.pipeline.steps.train_kubernetes import requested_resources
    from control_api.training.backends.job_manifest import bound_resources

    try:
        bound_resources(
            requested_resources(request),
            settings.training.kubernetes,
            default_timeout_seconds=int(settings.training.timeout_seconds),
        )
    except InvalidRequestError as refused:
        problems = refused.details if isinstance(refused.details, list) else []
        raise InvalidRequestError(
            refused.message,
            code="validation_error",
            details=[{**problem, "rule": "training_bounds"} for problem in problems],
        ) from None


def make_backend(settings: Settings) -> TrainingBackend:
    from control_api.training.backends.kubernetes import KubernetesTrainingBackend

    return KubernetesTrainingBackend.from_settings(settings)


def make_train_step(services: Services) -> Step:
    from control_api.pipeline.steps.train_kubernetes import KubernetesTrainStep

    return KubernetesTrainStep(
        mlflow=lambda: services.mlflow,
        backend=lambda: services.training_backend,
        image_builder=lambda: services.image_builder,
        registry=lambda: services.registry,
    )


KIND = TrainingKind(
    name="kubernetes",
    settings_problems=validate_training_backend,
    admit=admit,
    make_train_step=make_train_step,
    make_backend=make_backend,
)
