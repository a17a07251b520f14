"""Rollback and undeploy refuse what cannot be done before anything is created: a model that is not
deployed (404), a version that never was (404), no earlier version (409), another operation running
(409). The GitOps history they read is a real git repository with deploy commits as the pipeline
writes them (trailers and all); nothing here runs a pipeline, because nothing may start."""

from __future__ import annotations

import pytest

from control_api.adapters.gitops.types import CommitRequest
from control_api.pipeline.pipelines import DEPLOY
from tests.support.control import assert_error_format

NAMESPACE = "mlops-models"  # the service's default namespace


@pytest.fixture
def lifecycle_client(make_client):
    return make_client(target={"kind": "local"})


def commit_deploy(client, model: str, version: str) -> str:
    services = client.app.state.services
    path = f"apps/{NAMESPACE}/{model}"
    return services.gitops.commit(
        CommitRequest(
            files={f"{path}/kustomization.yaml": f"# {model} v{version}\n".encode()},
            replace_dirs=(path,),
            delete_paths=(),
            subject=f"deploy {model} v{version}",
            trailers={
                "Model-Name": model,
                "Model-Version": version,
                "Run-Id": f"run-{version}",
                "Image": f"127.0.0.1:5000/m/{model}@sha256:{version * 64}"[:200],
                "Deployment-Id": f"dep-{version}",
                "Requested-By": "tester",
            },
        )
    ).sha


def commit_undeploy(client, model: str) -> None:
    client.app.state.services.gitops.commit(
        CommitRequest(
            files={},
            replace_dirs=(),
            delete_paths=(f"apps/{NAMESPACE}/{model}",),
            subject=f"undeploy {model}",
            trailers={
                "Model-Name": model,
                "Deployment-Id": "dep-undeploy",
                "Requested-By": "tester",
                "Action": "undeploy",
            },
        )
    )


def nothing_created(client) -> bool:
    return client.get("/mlops/deployments").json()["total"] == 0


def test_a_model_never_deployed_is_404_for_rollback_and_undeploy(lifecycle_client):
    client = lifecycle_client
    error = assert_error_format(client.post("/mlops/models/ghost/rollback", json={}), 404, "model_not_deployed")
    assert "ghost" in error["message"]
    assert_error_format(client.delete("/mlops/models/ghost/deployment"), 404, "model_not_deployed")
    assert nothing_created(client)


def test_an_undeployed_model_is_404(lifecycle_client):
    client = lifecycle_client
    commit_deploy(client, "gone", "1")
    commit_deploy(client, "gone", "2")
    commit_undeploy(client, "gone")
    assert_error_format(client.post("/mlops/models/gone/rollback", json={"version": "1"}), 404, "model_not_deployed")
    assert_error_format(client.delete("/mlops/models/gone/deployment"), 404, "model_not_deployed")
    assert nothing_created(client)


def test_rollback_with_no_previous_version_is_409(lifecycle_client):
    client = lifecycle_client
    commit_deploy(client, "single", "1")
    error = assert_error_format(client.post("/mlops/models/single/rollback", json={}), 409, "no_previous_version")
    assert "single" in error["message"]
    assert nothing_created(client)


def test_rollback_to_a_version_never_deployed_is_404(lifecycle_client):
    client = lifecycle_client
    commit_deploy(client, "pair", "1")
    commit_deploy(client, "pair", "2")
    error = assert_error_format(
        client.post("/mlops/models/pair/rollback", json={"version": "7"}), 404, "version_not_deployed"
    )
    assert "7" in error["message"]
    assert nothing_created(client)


def test_rollback_and_undeploy_while_a_deploy_runs_are_409_naming_it(lifecycle_client):
    client = lifecycle_client
    commit_deploy(client, "busy", "1")
    commit_deploy(client, "busy", "2")
    journal = client.app.state.services.journal
    running = journal.create(
        kind=DEPLOY,
        model_name="busy",
        namespace=NAMESPACE,
        request={"model_name": "busy"},
        step_names=["train"],
        requested_by="tester",
    )
    for response in (
        client.post("/mlops/models/busy/rollback", json={"version": "1"}),
        client.delete("/mlops/models/busy/deployment"),
    ):
        error = assert_error_format(response, 409, "deploy_in_progress")
        assert error["details"]["deployment_id"] == running.id
    assert client.get("/mlops/deployments").json()["total"] == 1
