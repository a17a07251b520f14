"""Named endpoints on the local target, with real MLflow, Docker, the registry and git: one model serves
two versions at two endpoints at once, each with its own URL, folder, history, rollback and undeploy,
and an endpoint that serves one model is refused to another."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from control_api.adapters.gitops import CommitRequest
from tests.e2e.review_helpers import git
from tests.support.control import assert_error_format, example_request
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS

MODEL = "iris-endpoints"
STAGING = "iris-endpoints-staging"


def served_version(url: str) -> str:
    """The version ``url`` serves, after checking that it predicts."""
    answer = httpx.post(f"{url}/predict", json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == len(ROWS)
    return str(httpx.get(f"{url}/metadata", timeout=10).json()["model_version"])


def finished(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] in ("deployed", "rolled_back", "undeployed"), body.get("error")
    return body


def test_two_endpoints_of_one_model_serve_two_versions(make_e2e_client, tmp_path, e2e_namespace) -> None:
    client: TestClient = make_e2e_client()
    services = client.app.state.services
    bare = tmp_path / "data" / "gitops.git"

    prod = finished(client.post("/mlops/deploy", json=example_request(MODEL)))
    assert (prod["endpoint"], prod["model_version"]) == (MODEL, "1")
    # Version 2: version 1's logged model registered again, so the test trains once.
    registered = services.mlflow.get_version(MODEL, "1")
    services.mlflow.register(MODEL, registered.source, registered.run_id, tags={})

    staging = finished(client.post(f"/mlops/models/{MODEL}/versions/2/deploy", json={"endpoint_name": STAGING}))
    assert (staging["endpoint"], staging["model_version"]) == (STAGING, "2")
    assert staging["inference_url"] != prod["inference_url"]
    prod_url = prod["inference_url"].removesuffix("/predict")
    staging_url = staging["inference_url"].removesuffix("/predict")
    assert (served_version(prod_url), served_version(staging_url)) == ("1", "2")

    # Each endpoint is its own folder and commit; the default endpoint's commit reads as before.
    tree = git("--git-dir", str(bare), "ls-tree", "--name-only", f"main:apps/{e2e_namespace}").split()
    assert sorted(tree) == [MODEL, STAGING]
    message = git("--git-dir", str(bare), "log", "-1", "--format=%B", "main")
    assert f"at {STAGING}" in message.splitlines()[0]
    assert f"Endpoint: {STAGING}" in message and f"Model-Name: {MODEL}" in message
    prod_message = git("--git-dir", str(bare), "log", "-1", "--format=%B", prod["commit"])
    assert "Endpoint:" not in prod_message

    listed = client.get("/mlops/endpoints", params={"model": MODEL}).json()
    assert listed["total"] == 2
    by_name = {e["endpoint"]: e for e in listed["endpoints"]}
    for name, version, url in ((MODEL, "1", prod_url), (STAGING, "2", staging_url)):
        entry = by_name[name]
        assert (entry["model_name"], entry["version"], entry["namespace"]) == (MODEL, version, e2e_namespace)
        assert entry["served"]["version"] == version and entry["served"]["healthy"] is True
        assert entry["served"]["url"] == url and entry["drift"] is None
    assert client.get("/mlops/endpoints", params={"model": "no-such-model"}).json()["total"] == 0

    history = client.get(f"/mlops/models/{MODEL}/history", params={"endpoint": STAGING}).json()
    assert history["endpoint"] == STAGING
    assert [(c["action"], c["version"]) for c in history["commits"]] == [("deploy", "2")]
    default_history = client.get(f"/mlops/models/{MODEL}/history").json()
    assert [c["version"] for c in default_history["commits"]] == ["1"]

    # The staging endpoint serves this model: another model is refused it, and nothing changes.
    services.mlflow.register("iris-intruder", registered.source, registered.run_id, tags={})
    head = git("--git-dir", str(bare), "rev-parse", "main")
    before = client.get("/mlops/deployments").json()["total"]
    error = assert_error_format(
        client.post("/mlops/models/iris-intruder/versions/1/deploy", json={"endpoint_name": STAGING}),
        409,
        "endpoint_in_use",
    )
    assert error["details"]["model_name"] == MODEL
    assert_error_format(
        client.post(f"/mlops/models/{MODEL}/versions/1/deploy", json={"endpoint_name": "Not_A_Label"}), 422
    )
    assert git("--git-dir", str(bare), "rev-parse", "main") == head
    assert client.get("/mlops/deployments").json()["total"] == before

    # Version 1 at staging (its image again), then a rollback there: staging serves 2 again, and the
    # default endpoint serves 1 throughout.
    finished(client.post(f"/mlops/models/{MODEL}/versions/1/deploy", json={"endpoint_name": STAGING}))
    assert (served_version(prod_url), served_version(staging_url)) == ("1", "1")
    rolled = finished(client.post(f"/mlops/models/{MODEL}/rollback", json={"endpoint_name": STAGING}))
    assert (rolled["endpoint"], rolled["model_version"]) == (STAGING, "2")
    assert (served_version(prod_url), served_version(staging_url)) == ("1", "2")
    # The default endpoint has one version only: nothing to roll back to there.
    assert_error_format(client.post(f"/mlops/models/{MODEL}/rollback", json={}), 409, "no_previous_version")

    # Undeploying staging removes only staging.
    finished(client.delete(f"/mlops/models/{MODEL}/deployment", params={"endpoint": STAGING}))
    try:
        httpx.get(f"{staging_url}/health", timeout=3)
        raise AssertionError("the undeployed staging endpoint still answers")
    except httpx.HTTPError:
        pass
    assert served_version(prod_url) == "1"
    listed = client.get("/mlops/endpoints").json()
    assert [(e["endpoint"], e["served"]["version"]) for e in listed["endpoints"]] == [(MODEL, "1")]
    tree = git("--git-dir", str(bare), "ls-tree", "--name-only", f"main:apps/{e2e_namespace}").split()
    assert tree == [MODEL]
    # Now free, the endpoint may serve another model.
    taken = finished(client.post("/mlops/models/iris-intruder/versions/1/deploy", json={"endpoint_name": STAGING}))
    assert (taken["model_name"], taken["endpoint"]) == ("iris-intruder", STAGING)

    # An endpoint taken by a commit made outside this service: the journal knows nothing of it, so
    # the deploy is admitted, and the commit step, which reads git, refuses it.
    services.gitops.commit(
        CommitRequest(
            files={f"apps/{e2e_namespace}/handmade/kustomization.yaml": b"resources: []\n"},
            replace_dirs=(f"apps/{e2e_namespace}/handmade",),
            delete_paths=(),
            subject="deploy wine by hand",
            body="",
            trailers={"Model-Name": "wine", "Endpoint": "handmade"},
        )
    )
    head = git("--git-dir", str(bare), "rev-parse", "main")
    refused = client.post(f"/mlops/models/{MODEL}/versions/1/deploy", json={"endpoint_name": "handmade"}).json()
    assert refused["status"] == "failed", refused
    assert (refused["error"]["step"], refused["error"]["code"]) == ("commit", "endpoint_in_use"), refused["error"]
    assert git("--git-dir", str(bare), "rev-parse", "main") == head
