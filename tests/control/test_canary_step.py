"""The canary step's walk through its phases, on real git and a real journal, with a target that
records what it is asked to sync and serves metrics the test controls.

Each look is made as the orchestrator makes it (the saved progress merged into the outputs), and
the step's clock is the test's: a ``NotYet`` moves it on by the time the step asked to wait.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest

from control_api.adapters.gitops import CommitRequest, GitOpsRepo
from control_api.errors import InvalidRequestError
from control_api.journal.store import DeploymentStatus, Journal
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.pipeline.steps import canary
from control_api.pipeline.steps.commit import CommitStep
from control_api.pipeline.steps.rollback import rollback_target
from control_api.settings import Settings
from control_api.targets.application import application_files
from control_api.targets.base import AppRef, NotReady, Ready
from tests.support.git import Remote

NAMESPACE = "mlops-models"
MODEL = "iris"
STABLE_IMAGE = "127.0.0.1:5000/mlops/iris@sha256:" + "ab" * 32
CANARY_IMAGE = "127.0.0.1:5000/mlops/iris@sha256:" + "cd" * 32
PATH = f"apps/{NAMESPACE}/{MODEL}"
STRATEGY = {
    "type": "canary",
    "steps": [25, 50, 100],
    "interval_seconds": 30,
    "analysis": {"max_error_rate": 0.05, "min_requests": 20, "latency_percentile": 99, "max_latency_ms": 250},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


class RecordingTarget:
    """Syncs are recorded; every rollout is ready at once (unless ``ready`` is False); each metrics
    read first adds ``per_read`` (requests, errors, slow) to the canary's cumulative counters."""

    kind = "fake"

    def __init__(self) -> None:
        self.synced: list[str] = []
        self.ready = True
        self.per_read = (50, 0, 0)
        self.counters = [0, 0, 0]
        self.metric_reads: list[str] = []

    def sync(self, app: AppRef, revision: str, log) -> dict:
        self.synced.append(revision)
        return {}

    def look_ready(self, app: AppRef, revision: str, state: dict):
        if not self.ready:
            return NotReady("the canary's pods are not ready")
        return Ready({"external_ip": "127.0.0.9", "deployment_url": "http://127.0.0.9"}, "ready")

    def replica_metrics(self, app: AppRef, deployment_name: str) -> list[str]:
        self.metric_reads.append(deployment_name)
        requests, errors, slow = self.per_read
        self.counters = [self.counters[0] + requests, self.counters[1] + errors, self.counters[2] + slow]
        total, failed, slow_total = self.counters
        fast = total - slow_total
        return [
            "# TYPE model_requests_total counter\n"
            f'model_requests_total{{endpoint="/predict",status="200"}} {total - failed}\n'
            f'model_requests_total{{endpoint="/predict",status="500"}} {failed}\n'
            "# TYPE model_request_seconds histogram\n"
            f'model_request_seconds_bucket{{endpoint="/predict",le="0.01"}} {fast}\n'
            f'model_request_seconds_bucket{{endpoint="/predict",le="1.0"}} {total}\n'
            f'model_request_seconds_bucket{{endpoint="/predict",le="+Inf"}} {total}\n'
            f'model_request_seconds_count{{endpoint="/predict"}} {total}\n'
            f'model_request_seconds_sum{{endpoint="/predict"}} {total * 0.005}\n'
        ]


@pytest.fixture
def world(tmp_path, monkeypatch):
    remote = Remote(tmp_path / "gitops.git")
    settings = Settings(data_dir=tmp_path / "data", target={"kind": "argocd"}, git={"remote_url": remote.url})
    gitops = GitOpsRepo(settings.git, remote.url, tmp_path / "work", initial_files={"README.md": b"GitOps\n"})
    gitops.ensure_remote()
    journal = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    clock = Clock()
    monkeypatch.setattr(canary.time, "time", clock.time)
    target = RecordingTarget()
    step = canary.CanaryStep(
        gitops=lambda: gitops, target=lambda: target, application_files=partial(application_files, settings)
    )
    yield SimpleNamespace(
        remote=remote, journal=journal, gitops=gitops, settings=settings, clock=clock, target=target, step=step
    )
    journal.engine.dispose()


def deploy_stable(world, replicas: int = 3, autoscaling: dict | None = None) -> str:
    config = {"replicas": replicas, **({"autoscaling": autoscaling} if autoscaling else {})}
    record = world.journal.create(
        kind="deploy",
        model_name=MODEL,
        namespace=NAMESPACE,
        request={"model_name": MODEL, "deployment_config": config},
        step_names=["commit"],
    )
    commit = CommitStep(
        gitops=lambda: world.gitops,
        forge=lambda: None,
        mlflow=lambda: None,
        application_files=partial(application_files, world.settings),
    )
    world.journal.step_started(record.id, "commit")
    ctx = StepContext(
        deployment=world.journal.get(record.id),
        outputs={"model_version": "1", "image_uri": STABLE_IMAGE, "run_id": "run-1"},
        settings=world.settings,
        journal=world.journal,
        step_name="commit",
    )
    result = commit.run(ctx)
    assert isinstance(result, StepResult)
    world.journal.set_status(record.id, DeploymentStatus.DEPLOYED, finished=True)
    return result.outputs["commit"]


def start_canary(world, strategy: dict | None = None) -> str:
    record = world.journal.create(
        kind="canary_deploy",
        model_name=MODEL,
        namespace=NAMESPACE,
        request={"model_name": MODEL, "deployment_config": {"replicas": 2}, "strategy": strategy or STRATEGY},
        step_names=["canary"],
    )
    world.journal.step_started(record.id, "canary")
    return record.id


def look(world, deployment_id: str) -> StepResult | NotYet:
    """One look, as the orchestrator makes it; a NotYet's progress is saved and the clock moves on."""
    record = world.journal.get(deployment_id)
    outputs = {
        "model_version": "2",
        "image_uri": CANARY_IMAGE,
        "run_id": "run-2",
        **(record.step("canary").outputs or {}),
    }
    ctx = StepContext(
        deployment=record, outputs=outputs, settings=world.settings, journal=world.journal, step_name="canary"
    )
    result = world.step.run(ctx)
    if isinstance(result, NotYet):
        world.journal.step_waiting(deployment_id, "canary", result.message, result.progress)
        world.clock.now += result.retry_after
    return result


def walk(world, deployment_id: str, max_looks: int = 200, stop_at_phase: str | None = None) -> StepResult | NotYet:
    for _ in range(max_looks):
        result = look(world, deployment_id)
        if isinstance(result, StepResult):
            return result
        if stop_at_phase and result.progress.get(canary.PHASE) == stop_at_phase:
            return result
    raise AssertionError(f"the canary did not finish in {max_looks} looks")


def canary_commits(world) -> list:
    return [c for c in world.gitops.history(path_prefix=PATH, limit=20) if c.trailers.get("Canary-Step")]


def test_a_healthy_canary_walks_every_step_and_is_promoted(world):
    stable_sha = deploy_stable(world)
    deployment_id = start_canary(world)

    result = walk(world, deployment_id)

    assert isinstance(result, StepResult)
    assert result.outputs[canary.OUTCOME] == "promoted"
    assert "final_status" not in result.outputs
    commits = list(reversed(canary_commits(world)))
    assert [c.trailers["Canary-Step"] for c in commits] == ["1/2", "2/2", "promote"]
    assert world.target.synced == [c.sha for c in commits]
    first, second, promote = commits
    # A step's commit names the stable version as the endpoint's, and the canary beside it.
    assert first.trailers["Model-Version"] == "1" and first.trailers["Image"] == STABLE_IMAGE
    assert first.trailers["Canary-Version"] == "2" and first.trailers["Canary-Weight"] == "25"
    assert first.trailers["Action"] == "canary" and first.trailers["Deployment-Id"] == deployment_id
    assert "1 canary : 3 stable = 25%" in world.remote.message(first.sha)
    step_one = world.gitops.read_files(first.sha, PATH)
    assert f"{PATH}/canary/kustomization.yaml" in step_one
    assert b"replicas: 1\n" in step_one[f"{PATH}/canary/deployment-patch.yaml"]
    step_two = world.gitops.read_files(second.sha, PATH)
    assert b"replicas: 3\n" in step_two[f"{PATH}/canary/deployment-patch.yaml"]
    assert "analysis of the step before passed" in world.remote.message(second.sha)
    # The stable files stay as the stable commit wrote them during the steps.
    stable_files = world.gitops.read_files(stable_sha, PATH)
    assert step_one[f"{PATH}/deployment-patch.yaml"] == stable_files[f"{PATH}/deployment-patch.yaml"]
    # The promotion serves the new version alone, with the replicas it asked for.
    promoted = world.gitops.read_files(promote.sha, PATH)
    assert not any("/canary/" in path for path in promoted)
    assert promote.trailers["Model-Version"] == "2" and promote.trailers["Image"] == CANARY_IMAGE
    assert promote.trailers["Action"] == "promote"
    assert b"replicas: 2\n" in promoted[f"{PATH}/deployment-patch.yaml"]
    evidence = world.journal.get(deployment_id).step("canary").outputs[canary.EVIDENCE]
    assert [e["outcome"] for e in evidence] == ["pass", "pass"]
    assert evidence[0]["requests"] == 50 and evidence[0]["weight"] == 25
    # Each analysis read the canary Deployment's own replicas, at the start and the end of its interval.
    assert world.target.metric_reads == ["iris-canary"] * 4


def test_an_erroring_canary_is_aborted_back_to_the_stable_files(world):
    stable_sha = deploy_stable(world)
    deployment_id = start_canary(world)
    world.target.per_read = (50, 20, 0)  # 40 % errors

    result = walk(world, deployment_id)

    assert result.outputs["final_status"] == "rolled_back"
    assert result.outputs[canary.OUTCOME] == "aborted"
    commits = list(reversed(canary_commits(world)))
    assert [c.trailers["Canary-Step"] for c in commits] == ["1/2", "abort"]
    abort = commits[-1]
    assert world.gitops.read_files(abort.sha, PATH) == world.gitops.read_files(stable_sha, PATH)
    assert abort.trailers["Model-Version"] == "1" and abort.trailers["Reverts-To"] == stable_sha
    assert abort.trailers["Action"] == "rollback"
    # The evidence is in the commit body and in the record.
    assert "error rate 40.0% above 5.0%" in world.remote.message(abort.sha)
    assert "max_error_rate=0.05" in world.remote.message(abort.sha)
    evidence = world.journal.get(deployment_id).step("canary").outputs[canary.EVIDENCE]
    assert evidence[-1]["outcome"] == "fail" and evidence[-1]["errors"] == 20
    assert world.target.synced[-1] == abort.sha


def test_a_slow_canary_is_aborted_on_latency(world):
    deploy_stable(world)
    deployment_id = start_canary(world)
    world.target.per_read = (50, 0, 10)  # a fifth of the answers take up to a second

    result = walk(world, deployment_id)

    assert result.outputs["final_status"] == "rolled_back"
    assert "p99 latency" in world.journal.get(deployment_id).step("canary").outputs[canary.ABORT_REASON]


def test_too_little_traffic_waits_then_aborts(world):
    deploy_stable(world)
    deployment_id = start_canary(world)
    world.target.per_read = (1, 0, 0)

    result = walk(world, deployment_id)

    reason = world.journal.get(deployment_id).step("canary").outputs[canary.ABORT_REASON]
    assert result.outputs["final_status"] == "rolled_back"
    assert "inconclusive after 6 intervals" in reason
    assert "fewer than the 20 a verdict needs" in reason


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_promote_and_abort_by_hand_during_the_analysis(world, action):
    stable_sha = deploy_stable(world)
    deployment_id = start_canary(world)
    walk(world, deployment_id, stop_at_phase=canary.ANALYSIS)
    world.journal.step_progress(deployment_id, "canary", {canary.MANUAL: action, canary.MANUAL_BY: "alice"})

    result = walk(world, deployment_id)

    commits = list(reversed(canary_commits(world)))
    assert [c.trailers["Canary-Step"] for c in commits] == ["1/2", action]
    if action == "promote":
        assert "final_status" not in result.outputs
        assert "promoted by alice" in world.remote.message(commits[-1].sha)
        assert commits[-1].trailers["Model-Version"] == "2"
    else:
        assert result.outputs["final_status"] == "rolled_back"
        assert "aborted by alice" in world.remote.message(commits[-1].sha)
        assert world.gitops.read_files(commits[-1].sha, PATH) == world.gitops.read_files(stable_sha, PATH)


def test_a_rerun_of_a_commit_phase_finds_its_commit(world):
    deploy_stable(world)
    deployment_id = start_canary(world)
    look(world, deployment_id)  # start
    first = look(world, deployment_id)  # step 1 committed and synced
    assert isinstance(first, NotYet) and first.progress[canary.PHASE] == canary.ROLLOUT
    # A crash before the journal saved the new phase: the step runs its commit phase again.
    world.journal.step_progress(deployment_id, "canary", {canary.PHASE: canary.STEP})
    look(world, deployment_id)
    assert [c.trailers["Canary-Step"] for c in canary_commits(world)] == ["1/2"]
    assert world.target.synced[0] == world.target.synced[1]


def test_a_canary_that_never_gets_ready_is_aborted(world):
    deploy_stable(world)
    deployment_id = start_canary(world)
    world.target.ready = False

    walk(world, deployment_id, max_looks=5000, stop_at_phase=canary.ABORTING)

    assert "not ready after" in world.journal.get(deployment_id).step("canary").outputs[canary.ABORT_REASON]
    world.target.ready = True
    final = walk(world, deployment_id)
    assert final.outputs["final_status"] == "rolled_back"


def test_with_nothing_served_the_new_version_is_promoted_at_once(world):
    deployment_id = start_canary(world)

    result = walk(world, deployment_id)

    assert result.outputs[canary.OUTCOME] == "promoted"
    assert [c.trailers["Canary-Step"] for c in canary_commits(world)] == ["promote"]
    assert world.target.metric_reads == []


def test_an_autoscaled_stable_version_is_refused_before_any_commit(world):
    deploy_stable(world, autoscaling={"min_replicas": 2, "max_replicas": 4, "target_cpu_utilization": 70})
    deployment_id = start_canary(world)
    with pytest.raises(InvalidRequestError) as refused:
        look(world, deployment_id)
    assert refused.value.code == "canary_not_possible"
    assert canary_commits(world) == []


def test_an_endpoint_named_like_the_canary_is_refused(world):
    deploy_stable(world)
    world.gitops.commit(
        CommitRequest(
            files={f"apps/{NAMESPACE}/{MODEL}-canary/kustomization.yaml": b"resources: []\n"},
            replace_dirs=(),
            delete_paths=(),
            subject="another endpoint",
            body="",
            trailers={"Model-Name": "other"},
        )
    )
    deployment_id = start_canary(world)
    with pytest.raises(InvalidRequestError) as refused:
        look(world, deployment_id)
    assert refused.value.code == "canary_not_possible" and "iris-canary" in refused.value.message
    assert canary_commits(world) == []


def test_a_rollback_after_a_promotion_restores_the_stable_deploy_not_a_canary_step(world):
    stable_sha = deploy_stable(world)
    walk(world, start_canary(world))
    history = world.gitops.history(path_prefix=PATH, trailer_filter={"Model-Name": MODEL}, limit=20)
    assert [c.trailers.get("Action", "deploy") for c in history] == ["promote", "canary", "canary", "deploy"]

    # The canary steps name version 1 as the endpoint's, but ran version 2 beside it.
    assert rollback_target(history, MODEL, NAMESPACE, None).sha == stable_sha
    assert rollback_target(history, MODEL, NAMESPACE, "1").sha == stable_sha


def test_a_cancelled_canary_restores_the_stable_files_and_syncs_them(world):
    stable_sha = deploy_stable(world)
    deployment_id = start_canary(world)
    walk(world, deployment_id, stop_at_phase=canary.ANALYSIS)
    record = world.journal.get(deployment_id)
    ctx = StepContext(
        deployment=record,
        outputs={"model_version": "2", **(record.step("canary").outputs or {})},
        settings=world.settings,
        journal=world.journal,
        step_name="canary",
    )

    world.step.discard(ctx)
    world.step.discard(ctx)  # a clean-up run again after a crash makes no second commit

    restore = world.gitops.history(path_prefix=PATH, limit=1)[0]
    assert restore.trailers["Cancels-Deployment-Id"] == deployment_id
    assert restore.trailers["Reverts-To"] == stable_sha and restore.trailers["Model-Version"] == "1"
    assert world.gitops.read_files(restore.sha, PATH) == world.gitops.read_files(stable_sha, PATH)
    assert world.target.synced[-2:] == [restore.sha, restore.sha]
    assert (
        len([c for c in world.gitops.history(path_prefix=PATH, limit=20) if "Cancels-Deployment-Id" in c.trailers]) == 1
    )


def test_a_cancel_before_any_canary_commit_changes_nothing(world):
    deploy_stable(world)
    deployment_id = start_canary(world)
    look(world, deployment_id)  # start: the stable version is known, nothing committed yet
    head = world.gitops.history(path_prefix=PATH, limit=1)[0].sha
    record = world.journal.get(deployment_id)
    ctx = StepContext(deployment=record, outputs={}, settings=world.settings, journal=world.journal, step_name="canary")
    world.step.discard(ctx)
    assert world.gitops.history(path_prefix=PATH, limit=1)[0].sha == head
    assert world.target.synced == []
