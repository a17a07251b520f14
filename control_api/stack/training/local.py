"""Training backend ``local``: a sandboxed subprocess of the control service (the default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.stack.training.kind import TrainingKind, admit_anything

if TYPE_CHECKING:
    from control_api.pipeline.step import Step
    from control_api.services import Services


def make_train_step(services: Services) -> Step:
    from control_api.pipeline.steps.train import TrainStep

    return TrainStep(mlflow=lambda: services.mlflow, environments=lambda: services.environments)


KIND = TrainingKind(
    name="local", settings_problems=lambda settings: [], admit=admit_anything, make_train_step=make_train_step
)
