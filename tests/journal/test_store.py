"""The deployment journal behaves the same on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_api.errors import NotFoundError
from control_api.journal.store import DeploymentStatus, Journal, StepStatus

STEPS = ["train", "register", "build", "push", "render", "commit", "sync", "wait"]


def create(journal: Journal, model_name: str = "iris", **overrides):
    fields = dict(
        kind="deploy",
        model_name=model_name,
        namespace="models",
        request={"model_name": model_name},
        step_names=STEPS,
    )
    fields.update(overrides)
    return journal.create(**fields)


def create_finished(journal: Journal, model_name: str = "iris", status: str = DeploymentStatus.DEPLOYED, **overrides):
    """A deployment that has ended, so the model is free for the next one."""
    created = create(journal, model_name, **overrides)
    journal.set_status(created.id, status, finished=True)
    return journal.get(created.id)


def test_create_then_get_returns_the_request_and_pending_steps(journal):
    request = {
        "model_name": "iris",
        "resources": {"cpu": "500m", "replicas": 2},
        "env": [{"name": "GREETING", "value": "grüß dich ✓"}],
        "ratio": 0.25,
        "canary": False,
        "note": None,
    }
    created = create(journal, request=request, requested_by="alice", idempotency_key="key-1")

    fetched = journal.get(created.id)

    assert fetched == created
    assert fetched.request == request
    assert (fetched.kind, fetched.model_name, fetched.namespace) == ("deploy", "iris", "models")
    assert fetched.status == DeploymentStatus.PENDING
    assert (fetched.requested_by, fetched.idempotency_key, fetched.error) == ("alice", "key-1", None)
    assert [step.name for step in fetched.steps] == STEPS
    assert [step.position for step in fetched.steps] == list(range(len(STEPS)))
    assert {step.status for step in fetched.steps} == {StepStatus.PENDING}
    assert all(step.attempts == 0 and step.outputs == {} for step in fetched.steps)


def test_create_keeps_a_given_deployment_id(journal):
    created = create(journal, deployment_id="0123456789abcdef0123456789abcdef")
    assert journal.get("0123456789abcdef0123456789abcdef").id == created.id


def test_get_of_an_unknown_id_is_not_found(journal):
    with pytest.raises(NotFoundError) as caught:
        journal.get("does-not-exist")
    assert caught.value.code == "deployment_not_found"


def test_list_filters_by_model_status_and_kind_newest_first(journal):
    first_iris = create_finished(journal, "iris", DeploymentStatus.DEPLOYED)
    wine = create_finished(journal, "wine", DeploymentStatus.DEPLOYED)
    second_iris = create(journal, "iris")
    journal.set_status(second_iris.id, DeploymentStatus.FAILED, error={"code": "x"}, finished=True)
    iris_rollback = create(journal, "iris", kind="rollback", step_names=["commit", "sync"])

    everything, total = journal.list()
    assert total == 4
    assert [r.id for r in everything] == [iris_rollback.id, second_iris.id, wine.id, first_iris.id]

    iris, iris_total = journal.list(model_name="iris")
    assert iris_total == 3
    assert [r.id for r in iris] == [iris_rollback.id, second_iris.id, first_iris.id]

    failed, failed_total = journal.list(status=DeploymentStatus.FAILED)
    assert (failed_total, [r.id for r in failed]) == (1, [second_iris.id])

    rollbacks, rollback_total = journal.list(kind="rollback")
    assert (rollback_total, [r.id for r in rollbacks]) == (1, [iris_rollback.id])

    deployed_iris_deploys, combined_total = journal.list(
        model_name="iris", status=DeploymentStatus.DEPLOYED, kind="deploy"
    )
    assert (combined_total, [r.id for r in deployed_iris_deploys]) == (1, [first_iris.id])

    nothing, nothing_total = journal.list(model_name="absent")
    assert (nothing, nothing_total) == ([], 0)


def test_list_pages_cover_every_deployment_once_in_order(journal):
    created = [create_finished(journal, "iris").id for _ in range(7)]
    newest_first = list(reversed(created))

    pages = []
    for offset in range(0, 9, 3):
        page, total = journal.list(limit=3, offset=offset)
        assert total == 7  # the total counts every match, not just the page
        pages.append([r.id for r in page])

    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]
    beyond, total = journal.list(limit=3, offset=7)
    assert (beyond, total) == ([], 7)


def test_step_lifecycle_records_attempts_times_messages_and_merged_outputs(journal):
    deployment = create(journal)

    journal.step_started(deployment.id, "train")
    running = journal.get(deployment.id).step("train")
    assert (running.status, running.attempts, running.finished_at) == (StepStatus.RUNNING, 1, None)
    assert running.started_at is not None

    journal.step_progress(deployment.id, "train", {"run_id": "run-1"})
    journal.step_progress(deployment.id, "train", {"experiment_id": "7"})
    assert journal.get(deployment.id).step("train").outputs == {"run_id": "run-1", "experiment_id": "7"}

    journal.step_finished(
        deployment.id,
        "train",
        StepStatus.SUCCEEDED,
        message="trained",
        outputs={"metrics": {"accuracy": 0.97}},
        log_tail="epoch 1\nepoch 2",
    )
    journal.step_started(deployment.id, "register")
    journal.step_finished(
        deployment.id, "register", StepStatus.SUCCEEDED, outputs={"model_version": 3, "run_id": "run-1"}
    )

    record = journal.get(deployment.id)
    train = record.step("train")
    assert (train.status, train.message, train.log_tail) == (StepStatus.SUCCEEDED, "trained", "epoch 1\nepoch 2")
    assert train.outputs == {"run_id": "run-1", "experiment_id": "7", "metrics": {"accuracy": 0.97}}
    assert train.finished_at >= train.started_at
    assert record.outputs == {
        "run_id": "run-1",
        "experiment_id": "7",
        "metrics": {"accuracy": 0.97},
        "model_version": 3,
    }
    assert record.step("build").status == StepStatus.PENDING


def test_a_restarted_step_counts_the_attempt_and_forgets_the_last_finish(journal):
    deployment = create(journal)
    journal.step_started(deployment.id, "push")
    journal.step_finished(deployment.id, "push", StepStatus.FAILED, message="registry down", log_tail="503")

    journal.step_started(deployment.id, "push")

    push = journal.get(deployment.id).step("push")
    assert (push.status, push.attempts, push.finished_at, push.message) == (StepStatus.RUNNING, 2, None, None)
    assert push.log_tail == "503"  # the last failure's log stays readable while the retry runs


def test_step_finished_without_outputs_keeps_earlier_ones(journal):
    deployment = create(journal)
    journal.step_started(deployment.id, "build")
    journal.step_progress(deployment.id, "build", {"image": "runtime:abc"})
    journal.step_finished(deployment.id, "build", StepStatus.SUCCEEDED)
    assert journal.get(deployment.id).step("build").outputs == {"image": "runtime:abc"}


def test_set_status_records_errors_and_the_finish(journal):
    deployment = create(journal)

    journal.set_status(
        deployment.id, DeploymentStatus.FAILED, error={"code": "push_failed", "detail": {"attempts": 3}}, finished=True
    )
    failed = journal.get(deployment.id)
    assert failed.error == {"code": "push_failed", "detail": {"attempts": 3}}
    assert failed.finished_at is not None and failed.is_final
    assert failed.updated_at >= deployment.updated_at

    journal.set_status(deployment.id, DeploymentStatus.PENDING)
    resumed = journal.get(deployment.id)
    assert resumed.error == {"code": "push_failed", "detail": {"attempts": 3}}  # kept unless asked to clear
    assert resumed.finished_at is None and not resumed.is_final

    journal.set_status(deployment.id, DeploymentStatus.DEPLOYED, clear_error=True, finished=True)
    assert journal.get(deployment.id).error is None

    with pytest.raises(NotFoundError):
        journal.set_status("does-not-exist", DeploymentStatus.DEPLOYED)


def test_unfinished_and_active_for_endpoint_ignore_final_deployments(journal):
    create_finished(journal, "iris", DeploymentStatus.DEPLOYED)
    iris = create(journal, "iris")
    other_namespace = create(journal, "iris", namespace="staging")
    wine = create(journal, "wine")
    journal.set_status(wine.id, DeploymentStatus.AWAITING_REVIEW)
    for final in sorted(DeploymentStatus.FINAL):
        create_finished(journal, "cherry", final)

    assert [r.id for r in journal.unfinished()] == [iris.id, other_namespace.id, wine.id]
    assert journal.active_for_endpoint("iris", "models").id == iris.id
    assert journal.active_for_endpoint("cherry", "models") is None
    assert journal.active_for_endpoint("iris", "staging").id == other_namespace.id
    assert journal.active_for_endpoint("wine", "models").status == DeploymentStatus.AWAITING_REVIEW
    assert journal.active_for_endpoint("wine", "staging") is None
    assert journal.active_for_endpoint("absent", "models") is None


def test_reset_steps_from_makes_the_failed_and_running_steps_pending_again(journal):
    deployment = create(journal)
    for name in ("train", "register"):
        journal.step_started(deployment.id, name)
        journal.step_finished(deployment.id, name, StepStatus.SUCCEEDED, outputs={f"{name}_done": True})
    journal.step_started(deployment.id, "build")
    journal.step_finished(deployment.id, "build", StepStatus.FAILED, message="base image missing")
    journal.step_started(deployment.id, "push")  # a crash can leave a later step marked running
    journal.step_finished(deployment.id, "render", StepStatus.SKIPPED)

    journal.reset_steps_from(deployment.id, "register")

    statuses = {step.name: step.status for step in journal.get(deployment.id).steps}
    assert statuses == {
        "train": StepStatus.SUCCEEDED,
        "register": StepStatus.SUCCEEDED,  # finished steps are not redone
        "build": StepStatus.PENDING,
        "push": StepStatus.PENDING,
        "render": StepStatus.SKIPPED,
        "commit": StepStatus.PENDING,
        "sync": StepStatus.PENDING,
        "wait": StepStatus.PENDING,
    }
    build = journal.get(deployment.id).step("build")
    assert build.attempts == 1 and build.message == "base image missing"

    with pytest.raises(NotFoundError):
        journal.reset_steps_from("does-not-exist", "train")


def test_events_come_back_in_order_per_deployment_and_page_by_id(journal):
    deployment = create(journal)
    bystander = create(journal, "wine")
    journal.step_started(deployment.id, "train")
    journal.step_started(bystander.id, "train")
    journal.add_log(deployment.id, "train", ["line 1", "line 2", "ünïcode ✓"])
    journal.add_log(deployment.id, "train", [])
    journal.step_finished(deployment.id, "train", StepStatus.SUCCEEDED, message="ok")
    journal.set_status(deployment.id, DeploymentStatus.REGISTERED, finished=True)

    events = journal.events(deployment.id)

    assert [(e["type"], e["step"], e["data"]) for e in events] == [
        ("step", "train", {"status": StepStatus.RUNNING, "attempt": 1}),
        ("log", "train", {"line": "line 1"}),
        ("log", "train", {"line": "line 2"}),
        ("log", "train", {"line": "ünïcode ✓"}),
        ("step", "train", {"status": StepStatus.SUCCEEDED, "message": "ok"}),
        ("status", None, {"status": DeploymentStatus.REGISTERED}),
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    after_second = journal.events(deployment.id, after_id=ids[1])
    assert [e["id"] for e in after_second] == ids[2:]
    assert [e["id"] for e in journal.events(deployment.id, after_id=ids[1], limit=2)] == ids[2:4]
    assert journal.events(deployment.id, after_id=ids[-1]) == []
    assert [e["type"] for e in journal.events(bystander.id)] == ["step"]


def test_idempotency_key_finds_the_first_deployment_of_that_requester(journal):
    first = create_finished(journal, requested_by="alice", idempotency_key="nightly-42")
    create_finished(journal, requested_by="alice", idempotency_key="nightly-42")
    bobs = create_finished(journal, requested_by="bob", idempotency_key="nightly-42")
    create(journal, requested_by="alice")

    assert journal.find_by_idempotency_key("nightly-42", "alice").id == first.id
    assert journal.find_by_idempotency_key("nightly-42", "bob").id == bobs.id
    assert journal.find_by_idempotency_key("nightly-42", "carol") is None
    assert journal.find_by_idempotency_key("other", "alice") is None


def test_timestamps_come_back_timezone_aware_in_utc(journal):
    before = datetime.now(UTC)
    deployment = create(journal)
    journal.step_started(deployment.id, "train")
    journal.step_finished(deployment.id, "train", StepStatus.SUCCEEDED)
    journal.set_status(deployment.id, DeploymentStatus.REGISTERED, finished=True)
    after = datetime.now(UTC)

    record = journal.get(deployment.id)
    train = record.step("train")
    stamps = [record.created_at, record.updated_at, record.finished_at, train.started_at, train.finished_at]
    for stamp in stamps:
        assert stamp.utcoffset() == timedelta(0), stamp
        assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)
    assert record.created_at <= train.started_at <= train.finished_at <= record.finished_at

    for event in journal.events(deployment.id):
        at = datetime.fromisoformat(event["at"])
        assert event["at"].endswith("+00:00"), event["at"]
        assert before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1)

    listed, _ = journal.list()
    assert listed[0].created_at == record.created_at and listed[0].created_at.utcoffset() == timedelta(0)


def test_a_second_journal_on_the_same_url_sees_every_write(journal, journal_url):
    deployment = create(journal)
    journal.step_started(deployment.id, "train")
    journal.step_progress(deployment.id, "train", {"run_id": "run-9"})

    replica = Journal(journal_url)
    try:
        assert replica.get(deployment.id).step("train").outputs == {"run_id": "run-9"}
        assert [r.id for r in replica.unfinished()] == [deployment.id]
        replica.ping()
    finally:
        replica.close()


def test_nul_characters_in_step_text_are_stored_not_refused(journal):
    """A failing script's output can hold NUL, which PostgreSQL text refuses; the step must still finish."""
    deployment = create(journal)
    journal.step_started(deployment.id, "train")
    journal.add_log(deployment.id, "train", ["binary \x00 junk"])
    journal.step_finished(deployment.id, "train", StepStatus.FAILED, message="exit \x001", log_tail="tail\x00")

    train = journal.get(deployment.id).step("train")
    on_postgresql = journal.engine.dialect.name == "postgresql"
    as_stored = (lambda text: text.replace("\x00", "\ufffd")) if on_postgresql else (lambda text: text)
    assert train.status == StepStatus.FAILED
    assert (train.message, train.log_tail) == (as_stored("exit \x001"), as_stored("tail\x00"))
    assert journal.events(deployment.id)[1]["data"] == {"line": "binary \x00 junk"}  # JSON escapes NUL itself
