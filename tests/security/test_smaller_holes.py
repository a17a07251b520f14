"""Smaller holes: a replayed Idempotency-Key with another body, rollback or undeploy of a model that was
never deployed, and MLflow's Default experiment stored relative to the working folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from tests.support.control import assert_error_format, example_request


def test_idempotency_key_with_a_different_body_is_422_naming_the_conflict(client):
    headers = {"Idempotency-Key": "same-key-1"}
    first = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("idem-a"), headers=headers)
    assert first.status_code in (200, 202), first.text
    other = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("idem-b"), headers=headers)
    error = assert_error_format(other, 422, "idempotency_key_conflict")
    assert "same-key-1" in error["message"] and "model_name" in error["message"], error
    assert client.get("/mlops/deployments", params={"model": "idem-b"}).json()["total"] == 0
    same = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("idem-a"), headers=headers)
    assert same.json()["deployment_id"] == first.json()["deployment_id"]
    client.app.state.orchestrator.shutdown()


def test_rollback_and_undeploy_of_a_never_deployed_model_are_404_and_record_nothing(make_client):
    client = make_client(target={"kind": "local"})
    for response in (client.post("/mlops/models/ghost/rollback"), client.delete("/mlops/models/ghost/deployment")):
        error = assert_error_format(response, 404, "model_not_deployed")
        assert "ghost" in error["message"]
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_default_experiment_lives_under_the_artifact_root(tmp_path):
    root = (tmp_path / "artifacts").as_uri()
    fresh = MlflowGateway(f"sqlite:///{tmp_path / 'fresh.db'}", None, root)
    assert fresh.client.get_experiment("0").artifact_location == f"{root}/0"
    # A database made by MLflow itself (./mlruns/0) is corrected when the service opens it.
    old = tmp_path / "old.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{old}").search_experiments()
    assert (
        sqlite3.connect(old).execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0]
        != f"{root}/0"
    )
    opened = MlflowGateway(f"sqlite:///{old}", None, root)
    location = opened.client.get_experiment("0").artifact_location
    assert location == f"{root}/0" and Path(location.removeprefix("file://")).is_absolute()
