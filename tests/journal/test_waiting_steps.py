"""Waiting steps yield their worker: deploys waiting for a review do not starve the others.

The pipelines here are small stand-ins (no training): one waits for a "merge" that the test makes,
the other finishes at once. The orchestrator, the journal and the scheduling are the real ones.
"""

from __future__ import annotations

import threading
import time

from control_api.journal.store import DeploymentStatus, Journal, StepStatus
from control_api.pipeline.orchestrator import Orchestrator, Pipeline
from control_api.pipeline.step import NotYet, StepResult
from control_api.settings import Settings

WAITING_DEPLOYS = 10
WORKERS = 2  # fewer than the waiting deploys: a blocking wait would hold every worker


class MergeGate:
    def __init__(self) -> None:
        self.merged = threading.Event()
        self.looks = 0
        self._lock = threading.Lock()


class AwaitMerge:
    name = "review"
    status_label = DeploymentStatus.AWAITING_REVIEW
    max_attempts = 1

    def __init__(self, gate: MergeGate) -> None:
        self.gate = gate

    def run(self, ctx):
        with self.gate._lock:
            self.gate.looks += 1
        if self.gate.merged.is_set():
            return StepResult({"merged": True, "first_look": ctx.outputs.get("poll_first_look")})
        # What the step saves must come back on its next look.
        first = ctx.outputs.get("poll_first_look") or ctx.deployment_id
        return NotYet(retry_after=0.05, message="awaiting review", progress={"poll_first_look": first})


class Quick:
    name = "quick"
    status_label = "building"
    max_attempts = 1

    def run(self, ctx):
        return StepResult({"done": True})


def _orchestrator(tmp_path, gate: MergeGate) -> tuple[Orchestrator, Journal]:
    journal = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    settings = Settings(data_dir=tmp_path / "data", training={"log_tail_lines": 10})
    pipelines = {
        "review": Pipeline("review", (AwaitMerge(gate),), DeploymentStatus.DEPLOYED),
        "quick": Pipeline("quick", (Quick(),), DeploymentStatus.DEPLOYED),
    }
    return Orchestrator(journal, settings, pipelines, workers=WORKERS), journal


def _wait_final(journal: Journal, deployment_id: str, timeout: float):
    deadline = time.monotonic() + timeout
    record = journal.get(deployment_id)
    while not record.is_final and time.monotonic() < deadline:
        time.sleep(0.05)
        record = journal.get(deployment_id)
    return record


def test_ten_deploys_awaiting_review_leave_workers_for_an_ordinary_deploy(tmp_path):
    gate = MergeGate()
    orchestrator, journal = _orchestrator(tmp_path, gate)
    try:
        waiting = []
        for index in range(WAITING_DEPLOYS):
            record = journal.create(
                kind="review", model_name=f"m{index}", namespace="ns", request={}, step_names=["review"]
            )
            orchestrator.start(record.id)
            waiting.append(record.id)
        for deployment_id in waiting:
            assert orchestrator.wait(deployment_id, timeout=30).status == DeploymentStatus.AWAITING_REVIEW

        ordinary = journal.create(kind="quick", model_name="other", namespace="ns", request={}, step_names=["quick"])
        orchestrator.start(ordinary.id)
        # Liveness, not speed: with blocking waits on WORKERS threads this deploy would never start.
        assert orchestrator.wait(ordinary.id, timeout=30).status == DeploymentStatus.DEPLOYED
        assert all(journal.get(d).status == DeploymentStatus.AWAITING_REVIEW for d in waiting)

        gate.merged.set()
        for deployment_id in waiting:
            record = _wait_final(journal, deployment_id, timeout=30)
            assert record.status == DeploymentStatus.DEPLOYED, record.status
            step = record.step("review")
            assert step.status == StepStatus.SUCCEEDED
            # One attempt however many looks it took, and the saved progress reached the last look.
            assert step.attempts == 1
            assert step.outputs["first_look"] == deployment_id
        assert gate.looks > WAITING_DEPLOYS
    finally:
        orchestrator.shutdown()
        journal.close()


def test_a_retry_clears_a_waiting_steps_saved_state(tmp_path):
    gate = MergeGate()
    orchestrator, journal = _orchestrator(tmp_path, gate)
    try:
        record = journal.create(kind="review", model_name="m", namespace="ns", request={}, step_names=["review"])
        journal.step_started(record.id, "review")
        journal.step_waiting(record.id, "review", "awaiting review", {"poll_deadline": 1.0, "pull_request_number": 7})
        journal.step_finished(record.id, "review", StepStatus.FAILED, message="timed out")
        journal.reset_steps_from(record.id, "review")
        outputs = journal.get(record.id).step("review").outputs
        assert "poll_deadline" not in outputs
        assert outputs["pull_request_number"] == 7
    finally:
        orchestrator.shutdown()
        journal.close()
