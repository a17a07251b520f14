"""Admission as a unit, without HTTP: the namespace allowlist, the one-active-operation rule (its early
look and the journal's index behind it), the Idempotency-Key, retry, and create-then-start.

The journal is the real one (SQLite and PostgreSQL); the pipelines are stand-ins whose one step waits
(``NotYet``), so an admitted operation stays active for as long as a test needs it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from control_api.errors import ConflictError, InvalidRequestError
from control_api.journal.store import DeploymentStatus, Journal
from control_api.pipeline.admission import Admission
from control_api.pipeline.orchestrator import Orchestrator, Pipeline
from control_api.pipeline.pipelines import DEPLOY, ROLLBACK
from control_api.pipeline.step import NotYet, StepContext
from control_api.settings import Settings

ALLOWED = ["models", "staging"]


class Hold:
    """Waits for an hour: the operation stays active and holds no worker."""

    name = "hold"
    status_label = "training"
    max_attempts = 1

    def run(self, ctx: StepContext) -> NotYet:
        return NotYet(retry_after=3600, message="holding")


class Started(list[str]):
    def __call__(self, deployment_id: str) -> bool:
        self.append(deployment_id)
        return True


@pytest.fixture
def admission(journal: Journal, tmp_path) -> Iterator[Admission]:
    settings = Settings(data_dir=tmp_path / "data", api={"allowed_namespaces": ALLOWED, "default_namespace": "models"})
    orchestrator = Orchestrator(journal, settings, {DEPLOY: Pipeline(DEPLOY, (Hold(),), "registered")}, workers=1)
    orchestrator.start = Started()  # type: ignore[method-assign]
    yield Admission(journal, orchestrator, settings.api, "none", gitops=_no_gitops)
    orchestrator.shutdown()


def _no_gitops():
    raise AssertionError("a deploy's admission reads no git history")


def deploy(admission: Admission, model: str = "iris", namespace: str = "models", key: str | None = None, **request):
    body = {"model_name": model, "script_content": "cHJpbnQoKQ==", **request}
    return admission.deploy(
        model_name=model, namespace=namespace, request=body, requested_by="alice", idempotency_key=key
    )


def test_the_allowlist_names_the_namespace_or_gives_the_default(admission):
    assert admission.namespace(None) == "models"
    assert admission.namespace("staging") == "staging"
    with pytest.raises(InvalidRequestError) as refused:
        admission.namespace("kube-system")
    assert refused.value.code == "validation_error"
    assert "'kube-system' is not allowed" in refused.value.message
    assert refused.value.details[0]["rule"] == "allowlist"


def test_an_admitted_deploy_is_created_pending_and_started(admission, journal):
    admitted = deploy(admission)
    assert not admitted.replayed
    assert admitted.record.status == DeploymentStatus.PENDING
    assert [s.name for s in admitted.record.steps] == ["hold"]
    assert admission.orchestrator.start == [admitted.record.id]
    assert journal.get(admitted.record.id).requested_by == "alice"


def test_a_busy_model_refuses_a_second_operation_naming_the_first(admission, journal):
    first = deploy(admission).record
    with pytest.raises(ConflictError) as refused:
        deploy(admission)
    assert refused.value.code == "deploy_in_progress"
    assert refused.value.details == {"deployment_id": first.id, "status": DeploymentStatus.PENDING}
    assert first.id in refused.value.message and "GET /mlops/deployments/{id}" in refused.value.message
    assert [r.id for r in journal.list(model_name="iris")[0]] == [first.id]
    assert admission.orchestrator.start == [first.id]
    # Other models and namespaces are free; the model is free again once its operation has ended.
    deploy(admission, "wine")
    deploy(admission, namespace="staging")
    journal.set_status(first.id, DeploymentStatus.REGISTERED, finished=True)
    assert deploy(admission).record.id != first.id


def test_the_rule_of_one_operation_holds_per_endpoint_not_per_model(admission, journal):
    prod = deploy(admission).record
    staging = deploy(admission, endpoint_name="iris-staging").record  # the same model, another endpoint
    assert (prod.endpoint, staging.endpoint) == ("iris", "iris-staging")
    with pytest.raises(ConflictError) as refused:
        deploy(admission, endpoint_name="iris-staging")
    assert refused.value.details["deployment_id"] == staging.id
    assert "endpoint 'iris-staging' of model 'iris'" in refused.value.message
    # The endpoint is busy whichever model asks.
    with pytest.raises(ConflictError) as refused:
        deploy(admission, "wine", endpoint_name="iris")
    assert refused.value.details["deployment_id"] == prod.id
    assert admission.orchestrator.start == [prod.id, staging.id]


def test_the_journal_index_refusal_becomes_the_same_busy_answer(admission, journal, monkeypatch):
    """Another replica started an operation between admission's look and its insert: the journal's
    unique index refuses the insert, and admission answers exactly as its own look would have."""
    first = deploy(admission).record
    looks = []
    real_look = journal.active_for_endpoint

    def missed_by_the_early_look(model_name: str, namespace: str):
        looks.append(model_name)
        return None if len(looks) == 1 else real_look(model_name, namespace)

    monkeypatch.setattr(journal, "active_for_endpoint", missed_by_the_early_look)
    with pytest.raises(ConflictError) as refused:
        deploy(admission)
    assert len(looks) == 2  # admission's look, then the journal's after the index refused the insert
    assert refused.value.code == "deploy_in_progress"
    assert refused.value.details["deployment_id"] == first.id
    assert "GET /mlops/deployments/{id}" in refused.value.message
    assert admission.orchestrator.start == [first.id]


def test_the_same_idempotency_key_and_request_answer_the_first_deploy(admission, journal):
    first = deploy(admission, key="k-1")
    again = deploy(admission, key="k-1")
    assert again.replayed and again.record.id == first.record.id
    assert journal.list()[1] == 1
    assert admission.orchestrator.start == [first.record.id]


def test_the_same_idempotency_key_with_another_request_is_refused(admission, journal):
    first = deploy(admission, key="k-1")
    journal.set_status(first.record.id, DeploymentStatus.REGISTERED, finished=True)
    with pytest.raises(InvalidRequestError) as refused:
        deploy(admission, key="k-1", requirements=["scikit-learn"])
    assert refused.value.code == "idempotency_key_conflict"
    assert refused.value.details[0]["differing"] == ["requirements"]
    assert journal.list()[1] == 1


def test_a_retry_is_refused_while_another_operation_runs_and_for_an_unfinished_one(admission, journal):
    failed = deploy(admission).record
    journal.set_status(failed.id, DeploymentStatus.FAILED, error={"code": "training_failed"}, finished=True)
    running = deploy(admission).record
    with pytest.raises(ConflictError) as refused:
        admission.retry(failed.id)
    assert refused.value.code == "deploy_in_progress" and refused.value.details["deployment_id"] == running.id
    assert journal.get(failed.id).status == DeploymentStatus.FAILED
    with pytest.raises(ConflictError) as not_retryable:
        admission.retry(running.id)
    assert not_retryable.value.code == "not_retryable"

    journal.set_status(running.id, DeploymentStatus.REGISTERED, finished=True)
    retried = admission.retry(failed.id)
    assert retried.status == DeploymentStatus.PENDING and retried.error is None
    assert admission.orchestrator.start[-1] == failed.id


def test_rollback_and_undeploy_need_a_target_that_serves(admission, journal):
    with pytest.raises(ConflictError) as refused:
        admission.rollback("iris", "models", None, "alice")
    assert refused.value.code == "no_target" and "'none'" in refused.value.message
    with pytest.raises(ConflictError):
        admission.undeploy("iris", "models", "alice")
    assert journal.list()[1] == 0
    admission.orchestrator.pipelines[ROLLBACK] = Pipeline(ROLLBACK, (Hold(),), "deployed")
    admission.require_target()


def test_an_endpoint_serving_another_model_is_refused_until_an_undeploy_frees_it(admission, journal):
    def settle(kind: str, model: str, status: str) -> None:
        record = journal.create(
            kind=kind,
            model_name=model,
            endpoint="shared",
            namespace="models",
            request={"model_name": model},
            step_names=["hold"],
        )
        journal.set_status(record.id, status, finished=True)

    settle("deploy", "wine", DeploymentStatus.DEPLOYED)
    with pytest.raises(ConflictError) as caught:
        deploy(admission, "iris", endpoint_name="shared")
    assert caught.value.code == "endpoint_in_use" and caught.value.details["model_name"] == "wine"
    assert journal.list(model_name="iris")[1] == 0  # nothing was created
    # The model that holds it may deploy there again, and other endpoints are free.
    assert deploy(admission, "iris", endpoint_name="iris-canary").record.endpoint == "iris-canary"

    settle("undeploy", "wine", DeploymentStatus.UNDEPLOYED)
    admitted = deploy(admission, "iris", endpoint_name="shared")
    assert (admitted.record.model_name, admitted.record.endpoint) == ("iris", "shared")
