"""Deploy -> real URL on the local target, driven from the committed manifests."""

from __future__ import annotations

import httpx

from tests.support.control import example_request, pyfunc_predictions
from tests.support.git import commit_count, git_log
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS


def _check_open_inference_protocol(deployed: dict, want: list) -> None:
    """The deployed image answers V2 clients under the name and version the deploy registered."""
    import numpy as np
    import tritonclient.http as httpclient

    assert httpx.get(deployed["endpoints"]["v2_ready"], timeout=10).status_code == 200
    metadata = httpx.get(deployed["endpoints"]["v2_model"], timeout=10).json()
    assert metadata["name"] == deployed["model_name"] and metadata["versions"] == [deployed["model_version"]]
    client = httpclient.InferenceServerClient(url=deployed["external_ip"])
    tensor = httpclient.InferInput("input-0", [len(ROWS), len(COLUMNS)], "FP64")
    tensor.set_data_from_numpy(np.asarray(ROWS, dtype=np.float64))  # binary, tritonclient's default
    result = client.infer(deployed["model_name"], [tensor], model_version=deployed["model_version"])
    assert result.as_numpy("predict").tolist() == want


def _containers(docker_client, namespace: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"io.mlops.workload.namespace={namespace}"})


def test_deploy_serves_predictions_and_redeploy_replaces_the_old_version(
    make_e2e_client, docker_client, e2e_namespace, tmp_path
):
    client = make_e2e_client()
    bare = tmp_path / "data" / "gitops.git"

    first = client.post("/mlops/deploy", json=example_request("iris-e2e")).json()
    assert first["status"] == "deployed", first
    assert [s["name"] for s in first["steps"]] == ["train", "register", "build", "push", "commit", "sync", "wait"]
    assert first["image_uri"].startswith("127.0.0.1:5000/mlops-e2e/iris-e2e@sha256:")
    assert first["ecr_image"] == first["image_uri"]
    base = first["deployment_url"]
    assert base == f"http://{first['external_ip']}" and first["external_ip"].startswith("127.0.0.")
    assert first["inference_url"] == f"{base}/predict"
    assert first["endpoints"] == {
        "predict": f"{base}/predict",
        "health": f"{base}/health",
        "metadata": f"{base}/metadata",
        "v2_infer": f"{base}/v2/models/iris-e2e/infer",
        "v2_model": f"{base}/v2/models/iris-e2e",
        "v2_ready": f"{base}/v2/models/iris-e2e/ready",
    }

    health = httpx.get(first["endpoints"]["health"], timeout=10)
    assert health.status_code == 200 and health.json()["model"]["version"] == "1"
    predicted = httpx.post(
        first["inference_url"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == pyfunc_predictions(client, "iris-e2e", "1")
    assert predicted.json()["model_version"] == "1"
    _check_open_inference_protocol(first, pyfunc_predictions(client, "iris-e2e", "1"))

    # Exactly one deploy commit, with the trailers a machine can parse.
    assert commit_count(bare) == 2  # seed + deploy
    message = git_log(bare, "-1", "--format=%B")
    assert message.startswith("deploy iris-e2e v1\n")
    for trailer in (
        "Model-Name: iris-e2e",
        "Model-Version: 1",
        f"Run-Id: {first['run_id']}",
        f"Image: {first['image_uri']}",
        f"Deployment-Id: {first['deployment_id']}",
        "Requested-By: anonymous",
    ):
        assert trailer in message
    assert first["commit"] == git_log(bare, "-1", "--format=%H").strip()

    # Bad input: a 4xx in the error format, never a 500.
    bad = httpx.post(first["inference_url"], json={"dataframe_split": {"columns": ["nope"], "data": [[1]]}}, timeout=10)
    assert 400 <= bad.status_code < 500
    assert set(bad.json()["error"]) >= {"code", "message"}

    # Replicas only: the container holding the model's network namespace and address stays.
    old_containers = {
        c.id for c in _containers(docker_client, e2e_namespace) if c.labels["io.mlops.workload.role"] == "replica"
    }
    second = client.post("/mlops/deploy", json=example_request("iris-e2e")).json()
    assert second["status"] == "deployed", second
    assert second["model_version"] == "2"
    build = next(s for s in second["steps"] if s["name"] == "build")
    assert "reused" in build["message"], build  # warm deploy: only the model layer was built
    metadata = httpx.get(second["endpoints"]["metadata"], timeout=10).json()
    assert metadata["model_version"] == "2" and metadata["run_id"] == second["run_id"]
    # Version 1's replica got SIGTERM during the sync and is removed once it has exited.
    assert client.app.state.services.local_runtime.wait_retired(timeout=60)
    remaining = {c.id for c in _containers(docker_client, e2e_namespace)}
    assert not (old_containers & remaining), "version 1's container is still there"
    assert commit_count(bare) == 3

    # Re-running the commit step of the same deploy writes identical bytes: no new commit.
    retried = _rerun_commit(client, second["deployment_id"])
    assert retried["commit_changed"] is False and retried["commit"] == second["commit"]
    assert commit_count(bare) == 3

    # Rollback through the API: a revert-style commit, then the previous image serves again.
    rolled = client.post("/mlops/models/iris-e2e/rollback", json={}).json()
    assert rolled["status"] == "deployed", rolled
    assert rolled["model_version"] == "1" and rolled["image_uri"] == first["image_uri"]
    assert git_log(bare, "-1", "--format=%s").strip() == "rollback iris-e2e to v1"
    assert httpx.get(f"{rolled['deployment_url']}/metadata", timeout=10).json()["model_version"] == "1"

    # An explicit version: forward again to v2, which serves again.
    forward = client.post("/mlops/models/iris-e2e/rollback", json={"version": "2"}).json()
    assert forward["status"] == "deployed", forward
    assert forward["model_version"] == "2" and forward["image_uri"] == second["image_uri"]
    assert git_log(bare, "-1", "--format=%s").strip() == "rollback iris-e2e to v2"
    assert httpx.get(f"{forward['deployment_url']}/metadata", timeout=10).json()["model_version"] == "2"

    history = client.get("/mlops/models/iris-e2e/history").json()["commits"]
    assert [(c["action"], c["version"]) for c in history] == [
        ("rollback", "2"),
        ("rollback", "1"),
        ("deploy", "2"),
        ("deploy", "1"),
    ]
    assert history[3]["deployment_id"] == first["deployment_id"] and history[3]["image"] == first["image_uri"]

    gone = client.delete("/mlops/models/iris-e2e/deployment").json()
    assert gone["status"] == "undeployed", gone
    assert git_log(bare, "-1", "--format=%s").strip() == "undeploy iris-e2e"
    assert _containers(docker_client, e2e_namespace) == []


def _rerun_commit(client, deployment_id: str) -> dict:
    from functools import partial

    from control_api.pipeline.step import StepContext
    from control_api.pipeline.steps.commit import CommitStep
    from control_api.targets.application import application_files

    services = client.app.state.services
    record = services.journal.get(deployment_id)
    step = CommitStep(
        gitops=lambda: services.gitops,
        forge=lambda: services.forge,
        mlflow=lambda: services.mlflow,
        application_files=partial(application_files, services.settings),
    )
    return step.run(StepContext(record, dict(record.outputs), services.settings, services.journal, "commit")).outputs
