"""The commit steps run again after a crash that came after their push but before the journal
recorded them. The re-run must return the commit it already pushed and make none:

- deploy: identical bytes would make no commit, and the step would record whatever is the branch
  head by then (another writer's commit);
- rollback: choosing the target again would see its own commit as the current state and roll
  "back" to the version it had just replaced;
- undeploy: like deploy.

Real git (a bare file:// remote, the service's GitOpsRepo, another writer's clone) and a real
journal; the steps run in-process, as the orchestrator runs them (step_started, then run).
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest

from control_api.adapters.gitops import GitOpsRepo
from control_api.journal.store import DeploymentStatus, Journal
from control_api.pipeline.step import StepContext
from control_api.pipeline.steps.commit import CommitStep
from control_api.pipeline.steps.rollback import RollbackCommitStep, UndeployCommitStep
from control_api.settings import Settings
from control_api.targets.application import application_files
from tests.support.git import OtherClone, Remote

NAMESPACE = "mlops-models"
MODEL = "iris"
IMAGE = "127.0.0.1:5000/mlops/iris@sha256:" + "ab" * 32


@pytest.fixture
def world(tmp_path):
    remote = Remote(tmp_path / "gitops.git")
    settings = Settings(data_dir=tmp_path / "data", target={"kind": "argocd"}, git={"remote_url": remote.url})
    gitops = GitOpsRepo(settings.git, remote.url, tmp_path / "work", initial_files={"README.md": b"GitOps\n"})
    gitops.ensure_remote()
    journal = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    other = OtherClone(remote.url, tmp_path / "other")
    yield SimpleNamespace(remote=remote, journal=journal, gitops=gitops, settings=settings, other=other)
    journal.engine.dispose()


def attempt(world, step, deployment_id: str, outputs: dict | None = None) -> dict:
    """One attempt of ``step`` as the orchestrator makes it (the journal counts it)."""
    world.journal.step_started(deployment_id, step.name)
    ctx = StepContext(
        deployment=world.journal.get(deployment_id),
        outputs=dict(outputs or {}),
        settings=world.settings,
        journal=world.journal,
        step_name=step.name,
    )
    return step.run(ctx).outputs


def no_mlflow():
    raise AssertionError("a direct commit reads nothing from MLflow")


def commit_step(world) -> CommitStep:
    return CommitStep(
        gitops=lambda: world.gitops,
        forge=lambda: None,
        mlflow=no_mlflow,
        application_files=partial(application_files, world.settings),
    )


def deploy(world, version: str) -> tuple[str, dict]:
    record = world.journal.create(
        kind="deploy", model_name=MODEL, namespace=NAMESPACE, request={"model_name": MODEL}, step_names=["commit"]
    )
    outputs = {"model_version": version, "image_uri": IMAGE, "run_id": f"run-{version}"}
    return record.id, outputs


def test_deploy_commit_rerun_returns_its_commit_although_the_head_moved(world):
    deployment_id, outputs = deploy(world, "1")
    first = attempt(world, commit_step(world), deployment_id, outputs)
    assert first["commit_changed"] is True
    unrelated = world.other.write_and_push({"NOTES.md": "another writer\n"}, "unrelated change")
    count = world.remote.commit_count()

    again = attempt(world, commit_step(world), deployment_id, outputs)  # the crash came before the journal write
    assert again["commit"] == first["commit"] != unrelated
    assert world.remote.commit_count() == count


def test_rollback_rerun_returns_its_commit_and_does_not_roll_back_again(world):
    for version in ("1", "2"):
        deployment_id, outputs = deploy(world, version)
        attempt(world, commit_step(world), deployment_id, outputs)
        world.journal.set_status(deployment_id, DeploymentStatus.DEPLOYED, finished=True)
    rollback = world.journal.create(
        kind="rollback", model_name=MODEL, namespace=NAMESPACE, request={}, step_names=["commit", "sync", "wait"]
    )
    first = attempt(world, RollbackCommitStep(gitops=lambda: world.gitops), rollback.id)
    assert (first["model_version"], first["rolled_back_from"], first["commit_changed"]) == ("1", "2", True)
    count = world.remote.commit_count()

    again = attempt(world, RollbackCommitStep(gitops=lambda: world.gitops), rollback.id)
    assert again["commit"] == first["commit"]
    assert (again["model_version"], again["rolled_back_from"]) == ("1", "2")
    assert again["image_uri"] == first["image_uri"] and again["run_id"] == "run-1"
    assert world.remote.commit_count() == count
    assert "Model-Version: 1" in world.remote.message()


def test_undeploy_rerun_returns_its_commit_although_the_head_moved(world):
    deployment_id, outputs = deploy(world, "1")
    attempt(world, commit_step(world), deployment_id, outputs)
    world.journal.set_status(deployment_id, DeploymentStatus.DEPLOYED, finished=True)
    undeploy = world.journal.create(
        kind="undeploy", model_name=MODEL, namespace=NAMESPACE, request={}, step_names=["commit", "prune"]
    )
    first = attempt(world, UndeployCommitStep(gitops=lambda: world.gitops), undeploy.id)
    unrelated = world.other.write_and_push({"NOTES.md": "another writer\n"}, "unrelated change")
    count = world.remote.commit_count()

    again = attempt(world, UndeployCommitStep(gitops=lambda: world.gitops), undeploy.id)
    assert again["commit"] == first["commit"] != unrelated
    assert world.remote.commit_count() == count
