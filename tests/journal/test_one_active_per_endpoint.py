"""The journal itself refuses a second active operation on an endpoint (on SQLite and on PostgreSQL),
and a journal made before that rule gets it at start-up, its duplicates settled."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from control_api.errors import ConflictError
from control_api.journal.rows import ONE_ACTIVE_PER_MODEL_INDEX_NAME
from control_api.journal.store import ONE_ACTIVE_PER_ENDPOINT, DeploymentStatus, Journal

STEPS = ["train", "register"]


def create(journal: Journal, model_name: str = "iris", namespace: str = "models", kind: str = "deploy", endpoint=None):
    return journal.create(
        kind=kind,
        model_name=model_name,
        namespace=namespace,
        request={"model_name": model_name},
        step_names=STEPS,
        endpoint=endpoint,
    )


def assert_busy_with(caught: pytest.ExceptionInfo, running_id: str) -> None:
    assert caught.value.code == "deploy_in_progress"
    assert caught.value.details["deployment_id"] == running_id
    assert running_id in caught.value.message


def test_create_refuses_a_second_active_operation_on_the_model_naming_the_first(journal):
    # create() does no check of its own before inserting: the refusal comes from the database.
    running = create(journal)
    journal.set_status(running.id, DeploymentStatus.AWAITING_REVIEW)

    for kind in ("deploy", "rollback", "undeploy"):
        with pytest.raises(ConflictError) as caught:
            create(journal, kind=kind)
        assert_busy_with(caught, running.id)

    assert [r.id for r in journal.list(model_name="iris")[0]] == [running.id]
    # Other models and other namespaces are not affected.
    create(journal, "wine")
    create(journal, "iris", namespace="staging")

    journal.set_status(running.id, DeploymentStatus.DEPLOYED, finished=True)
    assert create(journal).status == DeploymentStatus.PENDING


def test_a_retry_cannot_make_a_deployment_active_while_another_runs(journal):
    failed = create(journal)
    journal.set_status(failed.id, DeploymentStatus.FAILED, error={"code": "training_failed"}, finished=True)
    running = create(journal)

    with pytest.raises(ConflictError) as caught:
        journal.set_status(failed.id, DeploymentStatus.PENDING, clear_error=True)
    assert_busy_with(caught, running.id)
    unchanged = journal.get(failed.id)
    assert (unchanged.status, unchanged.error) == (DeploymentStatus.FAILED, {"code": "training_failed"})

    journal.set_status(running.id, DeploymentStatus.REGISTERED, finished=True)
    journal.set_status(failed.id, DeploymentStatus.PENDING, clear_error=True)
    assert journal.get(failed.id).status == DeploymentStatus.PENDING


def make_journal_from_before_the_rule(url: str) -> dict[str, str]:
    """A journal as an older service left it: no index, and two replicas that both started iris."""
    old = Journal(url)
    try:
        with old.engine.begin() as connection:
            connection.execute(text(f"DROP INDEX {ONE_ACTIVE_PER_ENDPOINT.name}"))
        ids = {}
        ids["finished"] = create(old).id
        old.set_status(ids["finished"], DeploymentStatus.DEPLOYED, finished=True)
        ids["oldest"] = create(old).id
        old.set_status(ids["oldest"], DeploymentStatus.AWAITING_REVIEW)
        ids["second"] = create(old, kind="rollback").id
        ids["third"] = create(old).id
        old.step_started(ids["third"], "train")
        ids["staging"] = create(old, namespace="staging").id
        ids["wine"] = create(old, "wine").id
        return ids
    finally:
        old.close()


def test_an_older_journal_gets_the_rule_and_its_later_duplicates_end_failed(journal_url):
    ids = make_journal_from_before_the_rule(journal_url)

    migrated = Journal(journal_url)
    try:
        index_names = {index["name"] for index in inspect(migrated.engine).get_indexes("deployments")}
        assert ONE_ACTIVE_PER_ENDPOINT.name in index_names

        assert [r.id for r in migrated.unfinished()] == [ids["oldest"], ids["staging"], ids["wine"]]
        assert migrated.get(ids["oldest"]).status == DeploymentStatus.AWAITING_REVIEW
        assert migrated.get(ids["finished"]).status == DeploymentStatus.DEPLOYED
        for later in ("second", "third"):
            record = migrated.get(ids[later])
            assert record.status == DeploymentStatus.FAILED and record.finished_at is not None
            assert record.error["code"] == "concurrent_operation"
            assert record.error["details"] == {"deployment_id": ids["oldest"]}
            assert ids["oldest"] in record.error["message"]
            assert migrated.events(ids[later])[-1]["data"] == {"status": DeploymentStatus.FAILED}
        # The interrupted step is left as it was, for a retry to pick up.
        assert migrated.get(ids["third"]).step("train").status == "running"

        with pytest.raises(ConflictError) as caught:
            create(migrated)
        assert_busy_with(caught, ids["oldest"])
        with pytest.raises(ConflictError) as caught:
            migrated.set_status(ids["third"], DeploymentStatus.PENDING, clear_error=True)
        assert_busy_with(caught, ids["oldest"])
    finally:
        migrated.close()

    # Opening it again changes nothing.
    again = Journal(journal_url)
    try:
        assert [r.id for r in again.unfinished()] == [ids["oldest"], ids["staging"], ids["wine"]]
        assert again.get(ids["third"]).status == DeploymentStatus.FAILED
    finally:
        again.close()


def test_a_model_freed_between_the_refusal_and_the_lookup_is_taken(journal, monkeypatch):
    running = create(journal)
    looked_up = []
    original_lookup = journal.active_for_endpoint

    def finish_first_then_look(model_name: str, namespace: str):
        # The operation the index refused us for ends just before we look for it.
        journal.set_status(running.id, DeploymentStatus.DEPLOYED, finished=True)
        looked_up.append(model_name)
        return original_lookup(model_name, namespace)

    monkeypatch.setattr(journal, "active_for_endpoint", finish_first_then_look)
    second = create(journal)

    assert looked_up == ["iris"]
    assert journal.get(second.id).status == DeploymentStatus.PENDING
    assert [step.name for step in journal.get(second.id).steps] == STEPS
    assert [r.id for r in journal.unfinished()] == [second.id]


def test_an_index_made_before_cancelled_was_final_is_rebuilt_on_open(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    journal = Journal(url)
    with journal.engine.begin() as connection:
        current = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE name = :name"), {"name": ONE_ACTIVE_PER_ENDPOINT.name}
        ).scalar()
        old = current.replace("'cancelled', ", "").replace(", 'cancelled'", "")
        assert "'cancelled'" not in old and "'failed'" in old
        connection.execute(text(f"DROP INDEX {ONE_ACTIVE_PER_ENDPOINT.name}"))
        connection.execute(text(old))
    cancelled = create(journal)
    journal.request_cancel(cancelled.id, "someone")
    journal.set_status(cancelled.id, DeploymentStatus.CANCELLED, finished=True)
    with pytest.raises(IntegrityError):  # the old condition still counts the cancelled deploy as active
        create(journal)
    journal.close()

    reopened = Journal(url)
    try:
        second = create(reopened)
        assert reopened.get(second.id).status == DeploymentStatus.PENDING
        with pytest.raises(ConflictError):  # and the rebuilt index still holds one active per model
            create(reopened)
    finally:
        reopened.close()


def test_endpoints_of_one_model_run_side_by_side_and_each_is_busy_on_its_own(journal):
    default = create(journal)
    staging = create(journal, endpoint="iris-staging")
    assert (journal.get(default.id).endpoint, journal.get(staging.id).endpoint) == ("iris", "iris-staging")

    with pytest.raises(ConflictError) as caught:
        create(journal, endpoint="iris-staging")
    assert_busy_with(caught, staging.id)
    # The endpoint is what is busy, whichever model asks for it.
    with pytest.raises(ConflictError) as caught:
        create(journal, "wine", endpoint="iris")
    assert_busy_with(caught, default.id)
    assert [r.id for r in journal.list(endpoint="iris-staging")[0]] == [staging.id]


def test_a_journal_from_before_endpoints_gets_the_column_and_the_rule_per_endpoint(journal_url):
    """The column is added and filled with the model's name, and the per-model rule, which would refuse
    a second endpoint of the model, is replaced by the per-endpoint one."""
    old = Journal(journal_url)
    try:
        with old.engine.begin() as connection:
            per_model = ONE_ACTIVE_PER_ENDPOINT.name.replace("_endpoint", "_model")
            assert per_model == ONE_ACTIVE_PER_MODEL_INDEX_NAME
            connection.execute(text(f"DROP INDEX {ONE_ACTIVE_PER_ENDPOINT.name}"))
            connection.execute(text("ALTER TABLE deployments DROP COLUMN endpoint"))
            connection.execute(
                text(
                    f"CREATE UNIQUE INDEX {per_model} ON deployments (namespace, model_name) "
                    "WHERE status NOT IN ('cancelled', 'deployed', 'failed', 'registered', 'rolled_back', "
                    "'timed_out', 'undeployed')"
                )
            )
            running_id = "0" * 32
            connection.execute(
                text(
                    "INSERT INTO deployments (id, kind, model_name, namespace, status, request, requested_by, "
                    "created_at, updated_at) VALUES (:id, 'deploy', 'iris', 'models', 'training', '{}', 'alice', "
                    ":now, :now)"
                ),
                {"id": running_id, "now": "2026-11-01 00:00:00+00:00"},
            )
    finally:
        old.close()

    migrated = Journal(journal_url)
    try:
        index_names = {index["name"] for index in inspect(migrated.engine).get_indexes("deployments")}
        assert ONE_ACTIVE_PER_ENDPOINT.name in index_names
        assert ONE_ACTIVE_PER_MODEL_INDEX_NAME not in index_names
        assert migrated.get(running_id).endpoint == "iris"
        with pytest.raises(ConflictError) as caught:
            create(migrated)
        assert_busy_with(caught, running_id)
        assert create(migrated, endpoint="iris-staging").status == DeploymentStatus.PENDING
    finally:
        migrated.close()
