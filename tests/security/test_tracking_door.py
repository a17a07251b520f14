"""The tracking door accepts a training script's MLflow calls on its own run only, with the run's token.

A real embedded store (SQLite + local artifacts) behind a door served on a loopback port; the calls
come from MLflow's own REST client (what a script's ``mlflow.log_*`` uses) and from raw HTTP.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.training.tracking_door import TrackingDoor, new_socket_dir, open_door, safe_relative

MAX_ARTIFACT_BYTES = 4096


@pytest.fixture
def store(tmp_path):
    gateway = MlflowGateway(f"sqlite:///{tmp_path / 'mlflow.db'}", None, (tmp_path / "artifacts").as_uri())
    experiment_id = gateway.ensure_experiment("door")
    run_id = gateway.create_run(experiment_id, "door-run", {"mlops.requested_by": "alice"})
    other_experiment = gateway.ensure_experiment("other")
    other_run = gateway.create_run(other_experiment, "other-run", {})
    return gateway, experiment_id, run_id, other_experiment, other_run


@pytest.fixture
def door(store, monkeypatch):
    gateway, experiment_id, run_id, _, _ = store
    door = TrackingDoor(gateway, run_id, experiment_id, max_artifact_bytes=MAX_ARTIFACT_BYTES)
    with open_door(door, socket_dir=None) as opened:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", opened.token)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", opened.url)  # as in the sandbox: MLflow resolves models:/ through it
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        yield opened


def script_client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def forbidden(call) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        call()
    assert raised.value.error_code == "PERMISSION_DENIED", raised.value
    return raised.value.message


def test_the_script_logs_its_own_run_and_model(store, door, tmp_path):
    gateway, experiment_id, run_id, _, _ = store
    client = script_client(door.url)
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "accuracy", 0.9)
    client.set_tag(run_id, "team", "fraud")
    model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    assert model.artifact_location == f"mlflow-artifacts:/models/{model.model_id}"
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 100)
    client.log_artifact(run_id, str(weights), "outputs")
    run = gateway.get_run(run_id)
    assert run.data.params == {"alpha": "0.5"} and run.data.metrics == {"accuracy": 0.9}
    assert run.data.tags["team"] == "fraud"
    # The artifact landed where the store says the run's artifacts are, written by the service.
    stored = gateway.client.download_artifacts(run_id, "outputs/weights.bin", str(tmp_path / "back"))
    assert Path(stored).read_bytes() == b"w" * 100
    assert [f.path for f in client.list_artifacts(run_id, "outputs")] == ["outputs/weights.bin"]
    from mlflow.entities import LoggedModelStatus

    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert [m.model_id for m in gateway.logged_models_of_run(run_id, [experiment_id])] == [model.model_id]


def test_other_runs_experiments_and_service_tags_are_refused(store, door):
    gateway, experiment_id, run_id, other_experiment, other_run = store
    client = script_client(door.url)
    assert other_run in forbidden(lambda: client.log_param(other_run, "x", "1"))
    forbidden(lambda: client.get_run(other_run))
    forbidden(lambda: client.set_terminated(other_run, "FAILED"))
    forbidden(lambda: client.create_logged_model(other_experiment, name="m", source_run_id=other_run))
    forbidden(lambda: client.create_logged_model(experiment_id, name="m", source_run_id=other_run))
    forbidden(lambda: client.create_experiment("new"))
    forbidden(lambda: client.get_experiment(other_experiment))
    forbidden(lambda: client.search_runs([other_experiment]))
    forbidden(lambda: client.create_registered_model("hijack"))
    assert "deploy service" in forbidden(lambda: client.set_tag(run_id, "mlops.requested_by", "mallory"))
    assert gateway.get_run(run_id).data.tags["mlops.requested_by"] == "alice"
    assert gateway.get_run(other_run).data.params == {}
    assert gateway.client.get_experiment_by_name("new") is None


def raw_put(url: str, path: str, token: str) -> int:
    """PUT with the path sent as written (HTTP clients would normalise the dot segments away)."""
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    try:
        connection.request("PUT", path, body=b"x", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_artifact_paths_stay_inside_the_run(store, door):
    gateway, _, run_id, _, other_run = store
    headers = {"Authorization": f"Bearer {door.token}"}
    base = f"{door.url}/api/2.0/mlflow-artifacts/artifacts"
    for path in (f"runs/{run_id}/../../x", f"runs/{run_id}/./x", f"runs/{run_id}/%2e%2e/%2E%2E/x", f"runs/{run_id}//x"):
        assert raw_put(door.url, f"/api/2.0/mlflow-artifacts/artifacts/{path}", door.token) == 400, path
    assert httpx.put(f"{base}/runs/{other_run}/x", content=b"x", headers=headers).status_code == 403
    assert httpx.get(f"{base}/runs/{other_run}/x", headers=headers).status_code == 403
    too_big = httpx.put(f"{base}/runs/{run_id}/big.bin", content=b"x" * (MAX_ARTIFACT_BYTES + 1), headers=headers)
    assert too_big.status_code == 413
    assert gateway.client.list_artifacts(run_id) == []
    assert gateway.client.list_artifacts(other_run) == []


def test_the_token_is_required_and_dies_with_the_door(store):
    gateway, experiment_id, run_id, _, _ = store
    door = TrackingDoor(gateway, run_id, experiment_id, max_artifact_bytes=MAX_ARTIFACT_BYTES)
    with open_door(door, socket_dir=None) as opened:
        url = f"{opened.url}/api/2.0/mlflow/runs/get?run_id={run_id}"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {opened.token}"}).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(url, headers={"Authorization": f"Bearer {opened.token}"}, timeout=5)


def test_the_socket_folder_is_fresh_and_removed(store):
    gateway, experiment_id, run_id, _, _ = store
    door = TrackingDoor(gateway, run_id, experiment_id, max_artifact_bytes=MAX_ARTIFACT_BYTES)
    folder = new_socket_dir()
    with open_door(
        door, socket_dir=folder, owner=(os.getuid() + 1, os.getgid() + 1) if os.getuid() == 0 else None
    ) as opened:
        assert opened.socket_path == folder / "tracking.sock"
        assert oct(folder.stat().st_mode & 0o777) == oct(0o711)
        assert oct(opened.socket_path.stat().st_mode & 0o777) == oct(0o600)
        if os.getuid() == 0:
            assert opened.socket_path.stat().st_uid == os.getuid() + 1
    assert not folder.exists()


@pytest.mark.parametrize("path", ["..", "a/../b", "/", "./a", "a//b", "a/./b"])
def test_safe_relative_refuses_path_tricks(path):
    if path == "/":
        assert safe_relative(path) == ""
        return
    with pytest.raises(Exception) as raised:
        safe_relative(path)
    assert getattr(raised.value, "status", None) == 400
