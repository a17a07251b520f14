"""The same deploy against a real ``mlflow server`` process (MLOPS_MLFLOW__TRACKING_URI)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.support.control import example_request
from tests.support.mlflow_server import MlflowServer


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server").start()
    yield server.url
    server.stop()


def test_deploy_against_a_real_tracking_server(make_client, mlflow_server, tmp_path):
    client = make_client(mlflow={"tracking_uri": mlflow_server})
    assert client.get("/mlops/status").json()["components"]["mlflow"]["status"] == "healthy"
    body = client.post("/mlops/deploy", json=example_request("server-model")).json()
    assert body["status"] == "registered", body
    assert body["model_version"] == "1"
    remote = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run = remote.get_run(body["run_id"])
    assert run.data.params["n_estimators"] == "50"
    assert remote.get_model_version("server-model", "1").run_id == body["run_id"]
    # Nothing went to an embedded store: the service's data dir has no MLflow database.
    assert not (tmp_path / "data" / "mlflow" / "mlflow.db").exists()
    assert client.get("/mlops/models/server-model").json()["versions"][0]["metrics"]["accuracy"] > 0.8
