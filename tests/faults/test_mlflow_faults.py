"""MLflow faults through the control service, against a real ``mlflow server`` process (SQLite backend,
proxied artifacts) that the test stops and starts again on the same port and store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.faults.consistency import check_consistency
from tests.support.deploys import deploy, retry, step_attempts, tiny_request, wait_final, wait_until
from tests.support.mlflow_server import MlflowServer


def all_runs(url: str) -> list:
    remote = MlflowClient(tracking_uri=url, registry_uri=url)
    experiments = [e.experiment_id for e in remote.search_experiments()]
    return remote.search_runs(experiment_ids=experiments) if experiments else []


@pytest.fixture
def mlflow_server(tmp_path):
    """Not started: each test starts it (and kills it) when its story needs; it is gone after the test."""
    server = MlflowServer(tmp_path / "mlflow")
    yield server
    server.kill()


def test_mlflow_down_before_a_deploy(start_service, mlflow_server, cluster, kustomize_cmd):
    server = mlflow_server  # not started yet: nothing answers on its port
    client = start_service(mlflow={"tracking_uri": server.url})

    body = deploy(client, tiny_request("mlflow-before"))

    assert body["status"] == "failed", body
    error = body["error"]
    assert (error["step"], error["code"]) == ("train", "mlflow_unavailable"), error
    assert "MLflow is unreachable" in error["message"] and f"127.0.0.1:{server.port}" in error["message"], error
    assert "retry the deployment" in error["message"]
    assert step_attempts(body)["train"] == 3 and body["run_id"] is None

    server.start()
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"mlflow-before": {}} and state.tags == {"mlflow-before": {}}
    assert state.commits == []  # the service never got as far as creating its GitOps repo
    assert all_runs(server.url) == []

    final = retry(client, body["deployment_id"])

    assert final["status"] == "deployed", final
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"mlflow-before": {"1": body["deployment_id"]}}
    assert [r.info.run_id for r in all_runs(server.url)] == [final["run_id"]]


def test_mlflow_dies_during_a_deploy(start_service, mlflow_server, cluster, kustomize_cmd):
    """MLflow is killed (SIGKILL) after the script logged its model and before the service's next call."""
    server = mlflow_server.start()
    # The script's marker files must be visible from here: a sandboxed script's working folder is a
    # tmpfs only the script sees. What is under test is MLflow dying, not the sandbox.
    client = start_service(mlflow={"tracking_uri": server.url}, training={"sandbox": "off"})
    accepted = client.post("/mlops/deploy?wait=false", json=tiny_request("mlflow-during", hold=True))
    assert accepted.status_code == 202, accepted.text
    deployment_id = accepted.json()["deployment_id"]
    work = client.app.state.services.settings.data_path / "work" / deployment_id
    logged = wait_until(lambda: next(work.glob("**/model-logged"), None), 300, "the script to log its model")
    run_id = logged.parent.name

    server.kill()
    (logged.parent / "go-on").touch()
    body = wait_final(client, deployment_id)

    assert body["status"] == "failed", body
    error = body["error"]
    assert (error["step"], error["code"]) == ("train", "mlflow_unavailable"), error
    assert "MLflow is unreachable" in error["message"] and "retry the deployment" in error["message"], error
    server.start()
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"mlflow-during": {}} and state.tags == {"mlflow-during": {}}
    assert state.commits == []
    runs = all_runs(server.url)
    assert [r.info.run_id for r in runs] == [run_id]  # the run and its model survived the crash

    final = retry(client, deployment_id)

    assert final["status"] == "deployed", final
    # The finished run with its one model was picked up, not trained again.
    assert final["run_id"] == run_id and step_attempts(final)["train"] == 4
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"mlflow-during": {"1": deployment_id}}
    assert [r.info.run_id for r in all_runs(server.url)] == [run_id]
    remote = MlflowClient(tracking_uri=server.url)
    assert remote.get_run(run_id).info.status == "FINISHED"
    logs = {a.path for a in remote.list_artifacts(run_id, "logs")}
    assert logs == {f"logs/{run_id}.stdout.log", f"logs/{run_id}.stderr.log"}, logs
