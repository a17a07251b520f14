"""Deploying a registered version without training, on the local target with real MLflow, Docker, the
registry and git: a version that was served before gets its image again by digest (nothing is built),
a version that never was gets one built from the registered model, and a version the registry does not
have is refused before anything is made."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.e2e.review_helpers import git
from tests.support.control import assert_error_format, example_request
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS

MODEL = "iris-versions"


def deploy_version(client: TestClient, version: str, **body: object):
    return client.post(f"/mlops/models/{MODEL}/versions/{version}/deploy", json=body or None)


def served(body: dict) -> tuple[str, list]:
    """The version the model's URL serves and its predictions for the sample rows."""
    metadata = httpx.get(body["endpoints"]["metadata"], timeout=10).json()
    answer = httpx.post(body["inference_url"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10)
    assert answer.status_code == 200, answer.text
    return str(metadata["model_version"]), answer.json()["predictions"]


def step_message(body: dict, name: str) -> str:
    return next(step for step in body["steps"] if step["name"] == name)["message"] or ""


def test_registered_versions_deploy_without_training(make_e2e_client, tmp_path) -> None:
    client = make_e2e_client()
    services = client.app.state.services
    first = client.post("/mlops/deploy", json=example_request(MODEL)).json()
    assert first["status"] == "deployed", first.get("error")
    version_one, predictions = served(first)
    assert version_one == "1"

    # Version 2: the same logged model registered again outside any deploy, so it has no image yet.
    registered = services.mlflow.get_version(MODEL, "1")
    services.mlflow.register(MODEL, registered.source, registered.run_id, tags={"origin": "test"})

    second = deploy_version(client, "2", deployment_config={"replicas": 1}, environment_vars={"GREETING": "hello"})
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["status"] == "deployed", second.get("error")
    assert second["kind"] == "deploy_version" and second["model_version"] == "2"
    assert [step["name"] for step in second["steps"]] == [
        "resolve",
        "build",
        "push",
        "commit",
        "sync",
        "wait",
    ]
    assert "no image yet" in step_message(second, "resolve")
    assert "nothing to build" not in step_message(second, "build")
    assert second["image_uri"] != first["image_uri"]
    assert served(second) == ("2", predictions)
    bare = tmp_path / "data" / "gitops.git"
    assert "GREETING" in git("--git-dir", str(bare), "grep", "-h", "GREETING", "main")  # the server's variables

    # Version 1 again: its image from the first deploy, by digest; nothing built or pushed.
    third = deploy_version(client, "1").json()
    assert third["status"] == "deployed", third.get("error")
    assert third["image_uri"] == first["image_uri"]
    assert "nothing to build" in step_message(third, "build")
    assert "already in the registry" in step_message(third, "push")
    assert served(third) == ("1", predictions)
    message = git("--git-dir", str(bare), "log", "-1", "--format=%B", "main")
    assert "Model-Version: 1" in message and f"Image: {first['image_uri']}" in message
    assert f"Deployment-Id: {third['deployment_id']}" in message

    # A version the registry does not have, or a malformed one, is refused and changes nothing.
    before = client.get("/mlops/deployments", params={"model": MODEL}).json()["total"]
    head = git("--git-dir", str(bare), "rev-parse", "main")
    error = assert_error_format(deploy_version(client, "99"), 404, "model_version_not_found")
    assert error["details"] == {"model_name": MODEL, "version": "99"}
    assert_error_format(deploy_version(client, "v1"), 422)
    assert_error_format(deploy_version(client, "1", surprise=True), 422)
    assert_error_format(deploy_version(client, "1", environment_vars={"DB_PASSWORD": "hunter2hunter2"}), 422)
    assert client.get("/mlops/deployments", params={"model": MODEL}).json()["total"] == before
    assert git("--git-dir", str(bare), "rev-parse", "main") == head
