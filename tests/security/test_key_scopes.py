"""API keys limited to namespaces: such a key cannot deploy into, read the deploys of, roll back or
undeploy models outside them; keys without a scope keep their global role."""

from __future__ import annotations

import pytest

from control_api.api.security import hash_key
from control_api.pipeline.pipelines import DEPLOY
from tests.support.control import assert_error_format, example_request

STAGING_KEY, GLOBAL_KEY = "mlk_staging-deployer-0123456789", "mlk_global-deployer-0123456789"
KEYS = [
    {"name": "stella", "role": "deployer", "key_hash": hash_key(STAGING_KEY), "namespaces": ["staging"]},
    {"name": "gil", "role": "deployer", "key_hash": hash_key(GLOBAL_KEY)},
]
STAGING = {"X-API-Key": STAGING_KEY}
GLOBAL = {"X-API-Key": GLOBAL_KEY}


@pytest.fixture
def scoped(make_client):
    client = make_client(target={"kind": "local"}, auth={"keys": KEYS})
    journal = client.app.state.services.journal
    step_names = client.app.state.orchestrator.pipelines[DEPLOY].step_names
    # Finished deploy records in two namespaces (nothing runs: the records are what the routes read).
    client.records = {}
    for namespace in ("staging", "production"):
        record = journal.create(
            kind=DEPLOY,
            model_name=f"m-{namespace}",
            namespace=namespace,
            request={"model_name": f"m-{namespace}"},
            step_names=step_names,
            requested_by="gil",
        )
        journal.set_status(record.id, "failed", error={"code": "x", "message": "x", "step": "train"})
        client.records[namespace] = record.id
    return client


def assert_out_of_scope(response, namespace: str = "production") -> None:
    error = assert_error_format(response, 403, "forbidden")
    assert "limited to the namespaces staging" in error["message"] and repr(namespace) in error["message"], error


def test_deploy_outside_the_scope_is_refused_and_creates_nothing(scoped):
    journal = scoped.app.state.services.journal
    before = journal.list(limit=500)[1]
    assert_out_of_scope(
        scoped.post("/mlops/deploy", json=example_request("x", namespace="production"), headers=STAGING)
    )
    assert_out_of_scope(
        scoped.post("/mlops/deploy", json=example_request("x"), headers=STAGING), "mlops-models"
    )  # the default
    assert journal.list(limit=500)[1] == before


def test_listing_shows_only_the_scope(scoped):
    items = scoped.get("/mlops/deployments", headers=STAGING).json()
    assert {i["namespace"] for i in items["items"]} == {"staging"} and items["total"] == 1
    everything = scoped.get("/mlops/deployments", headers=GLOBAL).json()
    assert {i["namespace"] for i in everything["items"]} == {"staging", "production"}


def test_reading_a_deploy_outside_the_scope_is_refused(scoped):
    inside, outside = scoped.records["staging"], scoped.records["production"]
    assert scoped.get(f"/mlops/deployments/{inside}", headers=STAGING).status_code == 200
    assert_out_of_scope(scoped.get(f"/mlops/deployments/{outside}", headers=STAGING))
    assert_out_of_scope(scoped.get(f"/mlops/deployments/{outside}/events", headers=STAGING))
    assert scoped.get(f"/mlops/deployments/{outside}", headers=GLOBAL).status_code == 200


def test_retry_outside_the_scope_is_refused(scoped):
    outside = scoped.records["production"]
    assert_out_of_scope(scoped.post(f"/mlops/deployments/{outside}/retry", headers=STAGING))
    assert scoped.app.state.services.journal.get(outside).status == "failed"


def test_cancel_outside_the_scope_is_refused(scoped):
    outside = scoped.records["production"]
    events = scoped.app.state.services.journal.events(outside)
    assert_out_of_scope(scoped.post(f"/mlops/deployments/{outside}/cancel", headers=STAGING))
    assert scoped.app.state.services.journal.get(outside).status == "failed"
    assert scoped.app.state.services.journal.events(outside) == events


def test_rollback_outside_the_scope_is_refused(scoped):
    assert_out_of_scope(
        scoped.post("/mlops/models/m-production/rollback", json={"namespace": "production"}, headers=STAGING)
    )


def test_undeploy_outside_the_scope_is_refused(scoped):
    assert_out_of_scope(
        scoped.delete("/mlops/models/m-production/deployment", params={"namespace": "production"}, headers=STAGING)
    )


def test_history_outside_the_scope_is_refused(scoped):
    assert_out_of_scope(
        scoped.get("/mlops/models/m-production/history", params={"namespace": "production"}, headers=STAGING)
    )


def test_inside_the_scope_the_key_works_like_its_role(scoped):
    # Never deployed: the answer is the route's own (404), not a scope refusal.
    response = scoped.post("/mlops/models/m-staging/rollback", json={"namespace": "staging"}, headers=STAGING)
    assert_error_format(response, 404, "model_not_deployed")
    assert (
        scoped.get("/mlops/models/m-staging/history", params={"namespace": "staging"}, headers=STAGING).status_code
        == 200
    )
