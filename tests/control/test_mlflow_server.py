"""The same deploy against a real ``mlflow server`` process (MLOPS_MLFLOW__TRACKING_URI)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests.control.conftest import example_request
from tests.control.process import free_port, stop_process_group


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=open(tmp_path / "mlflow-server.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail("mlflow server exited: " + (tmp_path / "mlflow-server.log").read_text()[-2000:])
        time.sleep(0.5)
    else:
        pytest.fail("mlflow server did not start")
    yield url
    stop_process_group(proc)


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
