"""Which steps a deployment of each kind walks, by target.

``none`` stops after registration (status ``registered``): training and registry only. ``local`` and
``argocd`` continue to a served URL (status ``deployed``).
"""

from __future__ import annotations

from control_api.pipeline.orchestrator import Pipeline
from control_api.pipeline.steps.register import RegisterStep
from control_api.pipeline.steps.train import TrainStep
from control_api.settings import Settings

DEPLOY = "deploy"
ROLLBACK = "rollback"
UNDEPLOY = "undeploy"


def build_pipelines(settings: Settings) -> dict[str, Pipeline]:
    train_and_register = (TrainStep(), RegisterStep())
    if settings.target.kind == "none":
        return {DEPLOY: Pipeline(DEPLOY, train_and_register, "registered")}
    from control_api.pipeline.steps.rollback import PruneStep, RollbackCommitStep, UndeployCommitStep
    from control_api.pipeline.steps.serving import serving_steps
    from control_api.pipeline.steps.sync import SyncStep, WaitStep

    return {
        DEPLOY: Pipeline(DEPLOY, train_and_register + serving_steps(settings), "deployed"),
        ROLLBACK: Pipeline(ROLLBACK, (RollbackCommitStep(), SyncStep(), WaitStep()), "deployed"),
        UNDEPLOY: Pipeline(UNDEPLOY, (UndeployCommitStep(), PruneStep()), "undeployed"),
    }
