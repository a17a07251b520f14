"""Where steps meet the adapters they use: each step is constructed here with only those.

The target kinds (``control_api.stack.targets``) choose which of these pipelines they run.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from control_api.pipeline.orchestrator import Pipeline
from control_api.pipeline.pipelines import (
    CANARY_DEPLOY,
    CANARY_DEPLOY_VERSION,
    DEPLOY,
    DEPLOY_VERSION,
    ROLLBACK,
    UNDEPLOY,
)
from control_api.pipeline.step import Step
from control_api.pipeline.steps.build import BuildStep
from control_api.pipeline.steps.canary import CanaryStep
from control_api.pipeline.steps.commit import CommitStep
from control_api.pipeline.steps.push import PushStep
from control_api.pipeline.steps.register import RegisterStep
from control_api.pipeline.steps.resolve_version import ResolveVersionStep
from control_api.pipeline.steps.review import ReviewStep
from control_api.pipeline.steps.rollback import PruneStep, RollbackCommitStep, UndeployCommitStep
from control_api.pipeline.steps.sync import SyncStep, WaitStep
from control_api.targets.application import application_files
from control_api.targets.base import DeploymentTarget

if TYPE_CHECKING:
    from control_api.services import Services


def train_and_register(services: Services) -> tuple[Step, ...]:
    """The train step of the configured training backend kind, then the register step."""
    from control_api.stack.training import training_kind

    return (
        training_kind(services.settings.training.backend).make_train_step(services),
        RegisterStep(mlflow=lambda: services.mlflow),
    )


def registration_pipelines(services: Services) -> dict[str, Pipeline]:
    """Train and register only: the deploy ends ``registered``."""
    return {DEPLOY: Pipeline(DEPLOY, train_and_register(services), "registered")}


def serving_pipelines(services: Services) -> dict[str, Pipeline]:
    """Deploy to a served URL, roll back and undeploy, through git and the service's target."""
    gitops = lambda: services.gitops  # noqa: E731 - providers are one-line lambdas throughout
    forge = lambda: services.forge  # noqa: E731
    target = partial(_served_target, services)
    commit = CommitStep(
        gitops=gitops,
        forge=forge,
        mlflow=lambda: services.mlflow,
        application_files=partial(application_files, services.settings),
        target=target,
    )
    review: tuple[Step, ...] = (ReviewStep(gitops=gitops, forge=forge),) if services.settings.git.review_mode else ()
    serving: tuple[Step, ...] = (
        BuildStep(mlflow=lambda: services.mlflow, image_builder=lambda: services.image_builder),
        PushStep(registry=lambda: services.registry),
        commit,
        *review,
        SyncStep(target=target),
        WaitStep(target=target),
    )
    resolve = ResolveVersionStep(mlflow=lambda: services.mlflow, gitops=gitops)
    image: tuple[Step, ...] = serving[:2]
    canary = CanaryStep(gitops=gitops, target=target, application_files=partial(application_files, services.settings))
    return {
        DEPLOY: Pipeline(DEPLOY, train_and_register(services) + serving, "deployed"),
        DEPLOY_VERSION: Pipeline(DEPLOY_VERSION, (resolve, *serving), "deployed"),
        CANARY_DEPLOY: Pipeline(CANARY_DEPLOY, (*train_and_register(services), *image, canary), "deployed"),
        CANARY_DEPLOY_VERSION: Pipeline(CANARY_DEPLOY_VERSION, (resolve, *image, canary), "deployed"),
        ROLLBACK: Pipeline(
            ROLLBACK, (RollbackCommitStep(gitops=gitops), SyncStep(target=target), WaitStep(target=target)), "deployed"
        ),
        UNDEPLOY: Pipeline(UNDEPLOY, (UndeployCommitStep(gitops=gitops), PruneStep(target=target)), "undeployed"),
    }


def _served_target(services: Services) -> DeploymentTarget:
    target = services.target
    if target is None:
        raise RuntimeError(f"target kind {services.settings.target.kind!r} serves nothing; its pipelines cannot sync")
    return target


def build_pipelines(services: Services) -> dict[str, Pipeline]:
    """The pipelines of the configured target kind."""
    from control_api.stack.targets import target_kind

    return target_kind(services.settings.target.kind).pipelines(services)
