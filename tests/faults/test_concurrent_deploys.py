"""Concurrency through the control service: 20 deploys of different models at once all land (20
commits, 20 versions, 20 images, 20 served URLs); deploys of one model at once get the documented
answer (README, "Errors"): 409 naming the running deploy, and nothing created for the refused ones."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.consistency import check_consistency
from tests.support.control import assert_error_format
from tests.support.deploys import deploy, tiny_request, wait_final

FLEET = 20


def test_twenty_concurrent_deploys_of_different_models_all_land(start_service, cluster, kustomize_cmd):
    client = start_service()
    names = [f"fleet-{n:02d}" for n in range(FLEET)]
    _ = client.app.state.services.gitops  # the remote exists before the rush, as on a running installation

    with ThreadPoolExecutor(FLEET) as pool:
        answers = list(pool.map(lambda name: client.post("/mlops/deploy?wait=false", json=tiny_request(name)), names))

    assert [a.status_code for a in answers] == [202] * FLEET, [a.text for a in answers if a.status_code != 202]
    ids = {a.json()["deployment_id"]: a.json()["model_name"] for a in answers}
    deadline = time.monotonic() + 900
    while True:
        page = client.get("/mlops/deployments", params={"limit": 100}).json()["items"]
        if all(item["status"] in ("deployed", "failed", "timed_out") for item in page) and len(page) == FLEET:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not all deploys finished: {sorted((i['model_name'], i['status']) for i in page)}")
        time.sleep(1)
    failed = {i["model_name"]: i["error"] for i in page if i["status"] != "deployed"}
    assert failed == {}, failed

    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert sorted(c.deployment_id for c in state.commits if c.deployment_id) == sorted(ids)
    assert len(state.commits) == FLEET + 1  # and the seed
    assert state.versions == {name: {"1": deployment_id} for deployment_id, name in ids.items()}
    assert all(len(state.tags[name]) == 1 for name in names)
    urls = {i["model_name"]: i["endpoints"]["health"] for i in page}
    assert len(set(urls.values())) == FLEET
    for name, url in sorted(urls.items()):
        assert httpx.get(url, timeout=10).json()["model"]["name"] == name


def test_concurrent_deploys_of_one_model_get_409_with_the_running_id(start_service, cluster, kustomize_cmd):
    client = start_service()
    request = tiny_request("same-model")

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: client.post("/mlops/deploy?wait=false", json=request), range(5)))

    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 1, [(a.status_code, a.text) for a in answers]
    running = accepted[0].json()["deployment_id"]
    for answer in answers:
        if answer is not accepted[0]:
            error = assert_error_format(answer, 409, "deploy_in_progress")
            assert error["details"]["deployment_id"] == running, error
    assert client.get("/mlops/deployments").json()["total"] == 1  # the refused ones created nothing

    first = wait_final(client, running)
    assert first["status"] == "deployed", first
    second = deploy(client, request)  # once it finished, the model deploys again

    assert second["status"] == "deployed" and second["model_version"] == "2", second
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"same-model": {"1": running, "2": second["deployment_id"]}}
    assert [c.deployment_id for c in state.commits if c.deployment_id] == [running, second["deployment_id"]]
    assert state.head_images["same-model"] == second["image_uri"]
    assert httpx.get(second["endpoints"]["metadata"], timeout=10).json()["model_version"] == "2"

    # The checker is what every fault test relies on: it must see each kind of stray trace.
    assert_checker_notices_strays(client, kustomize_cmd, cluster, "same-model", second)


def assert_checker_notices_strays(client, kustomize_cmd, cluster, model: str, deployed: dict) -> None:
    import subprocess

    from tests.faults.consistency import MANIFEST_ACCEPT

    def check():
        check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)

    services = client.app.state.services
    record = services.journal.get(deployed["deployment_id"])
    orphan = services.mlflow.register(model, record.outputs["model_source"], deployed["run_id"], tags={})
    with pytest.raises(AssertionError, match="MLflow versions"):
        check()
    services.mlflow.client.delete_model_version(model, orphan.version)

    git_dir = client.app.state.services.gitops._access.local_path

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    head = git("rev-parse", "main")
    again = git(
        "commit-tree", "main^{tree}", "-p", "main", "-m", f"deploy again\n\nDeployment-Id: {deployed['deployment_id']}"
    )
    git("update-ref", "refs/heads/main", again, head)
    with pytest.raises(AssertionError, match="committed more than once"):
        check()
    git("update-ref", "refs/heads/main", head, again)
    check()  # all three stores agree again

    registry = client.app.state.services.settings.registry
    repository = f"http://{registry.url}/v2/{registry.repository_prefix}/{model}/manifests"
    manifest = httpx.get(
        f"{repository}/{deployed['image_uri'].rsplit('@', 1)[1]}", headers={"Accept": MANIFEST_ACCEPT}, timeout=30
    )
    put = httpx.put(
        f"{repository}/stray",
        content=manifest.content,
        headers={"Content-Type": manifest.headers["Content-Type"]},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    with pytest.raises(AssertionError, match="registry tags"):
        check()
