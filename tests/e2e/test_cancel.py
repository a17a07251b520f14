"""Cancel a running deploy, through the whole pipeline on the local target: real training processes,
a real Docker build, the real registry, real git, MLflow, and the forge emulator for review mode.

Each test checks that nothing half-made remains: no MLflow version, no registry tag, no commit of
the deploy on the target branch, and that the journal says who cancelled it at which step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.e2e.review_helpers import git, review_service
from tests.support.control import assert_error_format, b64, example_request
from tests.support.deploys import wait_until
from tests.support.pausing_builder import PausingBuilder
from tests.support.processes import live_members

# A training that says it has started (on its stdout, which the service keeps beside the sandbox's
# working folder), then sleeps far longer than any test waits.
SLEEPING_SCRIPT = """\
import time
print("started", flush=True)
time.sleep(900)
"""
FAILING_SCRIPT = "raise SystemExit(3)\n"
WAIT_SECONDS = 300


MANIFEST_ACCEPT = {
    "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
}


def manifest_url(image_tag: str) -> str:
    """The registry API address of ``host/repository:tag``."""
    repository, tag = image_tag.rsplit(":", 1)
    host, path = repository.split("/", 1)
    return f"http://{host}/v2/{path}/manifests/{tag}"


def script_request(model_name: str, script: str) -> dict[str, Any]:
    return {
        "script_content": b64(script),
        "script_name": "train.py",
        "model_name": model_name,
        "requirements": ["scikit-learn"],  # the training environment every e2e test shares
    }


def start(client: TestClient, request: dict[str, Any]) -> str:
    response = client.post("/mlops/deploy", params={"wait": "false"}, json=request)
    assert response.status_code == 202, response.text
    return str(response.json()["deployment_id"])


def wait_status(client: TestClient, deployment_id: str, wanted: Callable[[str], bool]) -> dict[str, Any]:
    return wait_until(
        lambda: (body := client.get(f"/mlops/deployments/{deployment_id}").json()) and wanted(body["status"]) and body,
        WAIT_SECONDS,
        f"deployment {deployment_id} to reach the wanted status",
        interval=0.2,
    )


def cancel(client: TestClient, deployment_id: str) -> httpx.Response:
    return client.post(f"/mlops/deployments/{deployment_id}/cancel")


def step(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in body["steps"] if s["name"] == name)


def assert_nothing_half_made(client: TestClient, body: dict[str, Any], bare: Path) -> None:
    """No MLflow version of the deploy, no image tag of it in the registry, no commit of it on main."""
    services = client.app.state.services
    deployment_id = body["deployment_id"]
    model_name = body["model_name"]
    mlflow_client = services.mlflow.client
    versions = mlflow_client.search_model_versions(f"name='{model_name}'")
    assert versions == [], [(v.version, v.run_id) for v in versions]
    registry = services.settings.registry
    tags = httpx.get(f"http://{registry.url}/v2/{registry.repository_prefix}/{model_name}/tags/list", timeout=10)
    assert tags.status_code in (200, 404), tags.text
    listed = (tags.json().get("tags") or []) if tags.status_code == 200 else []
    assert [t for t in listed if t.endswith(deployment_id[:12])] == [], listed
    if bare.exists():
        on_main = git("--git-dir", str(bare), "log", "main", "--format=%H", f"--grep=Deployment-Id: {deployment_id}")
        assert on_main.split() == []
    # The journal says who cancelled it and at which step, and the event stream carries it.
    assert body["status"] == "cancelled", body
    assert body["error"]["code"] == "cancelled"
    assert body["error"]["details"]["cancelled_by"] == "anonymous"
    events = client.app.state.services.journal.events(deployment_id)
    cancels = [e for e in events if e["type"] == "cancel"]
    assert len(cancels) == 1 and cancels[0]["data"]["cancelled_by"] == "anonymous", cancels
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses[-2:] == ["cancelling", "cancelled"], statuses


def test_cancel_during_training_kills_it_and_leaves_nothing(make_e2e_client, tmp_path):
    client = make_e2e_client()
    services = client.app.state.services
    deployment_id = start(client, script_request("cancel-train", SLEEPING_SCRIPT))

    def started() -> tuple[int, str] | None:
        outputs = services.journal.get(deployment_id).step("train").outputs
        run_id, pgid = outputs.get("run_id"), outputs.get("train_pgid")
        stdout = services.settings.data_path / "work" / deployment_id / f"{run_id}.stdout.log"
        if run_id and pgid and stdout.exists() and "started" in stdout.read_text():
            return int(pgid), str(run_id)
        return None

    pgid, run_id = wait_until(started, WAIT_SECONDS, "the training script to start")
    response = cancel(client, deployment_id)
    assert response.status_code in (200, 202), response.text
    if response.status_code == 202:
        assert response.json()["status"] == "cancelling"
        assert response.headers["location"] == f"/mlops/deployments/{deployment_id}"

    body = wait_status(client, deployment_id, lambda status: status == "cancelled")
    assert body["error"]["step"] == "train"
    assert step(body, "train")["status"] == "cancelled"
    assert all(step(body, name)["status"] == "pending" for name in ("register", "build", "push", "commit"))
    wait_until(lambda: not live_members(pgid), 30, f"the training's process group {pgid} to end")
    run = services.mlflow.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["mlops.cancelled"] == "true"
    assert_nothing_half_made(client, body, tmp_path / "data" / "gitops.git")

    # Cancelling it again, or a deploy that failed, is refused and changes nothing.
    before = client.get(f"/mlops/deployments/{deployment_id}").json()
    events_before = services.journal.events(deployment_id)
    error = assert_error_format(cancel(client, deployment_id), 409, "deployment_finished")
    assert error["details"]["status"] == "cancelled"
    assert client.get(f"/mlops/deployments/{deployment_id}").json() == before
    assert services.journal.events(deployment_id) == events_before

    failed_id = start(client, script_request("cancel-failed", FAILING_SCRIPT))
    failed = wait_status(client, failed_id, lambda status: status == "failed")
    error = assert_error_format(cancel(client, failed_id), 409, "deployment_finished")
    assert error["details"]["status"] == "failed"
    assert "failed" in error["message"]
    assert client.get(f"/mlops/deployments/{failed_id}").json() == failed

    assert_error_format(cancel(client, "0" * 32), 404, "deployment_not_found")


def test_cancel_during_build_stops_it_and_deletes_the_version(make_e2e_client, tmp_path, docker_client):
    client = make_e2e_client()
    services = client.app.state.services
    builder = PausingBuilder(services.image_builder)
    services.image_builder = builder  # the build step asks the services for its builder on each run
    deployment_id = start(client, example_request("cancel-build"))
    assert builder.building.wait(WAIT_SECONDS), "the build never started"
    version = services.journal.get(deployment_id).step("register").outputs["model_version"]
    assert services.mlflow.client.get_model_version("cancel-build", version).run_id

    response = cancel(client, deployment_id)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelling"
    builder.release.set()

    body = wait_status(client, deployment_id, lambda status: status == "cancelled")
    assert body["error"]["step"] == "build"
    assert step(body, "build")["status"] == "cancelled"
    assert step(body, "push")["status"] == "pending"
    # The build stopped: no model image of this deploy was made.
    labelled = docker_client.images.list(filters={"label": f"io.mlops.model.deployment-id={deployment_id}"})
    assert labelled == []
    assert_nothing_half_made(client, body, tmp_path / "data" / "gitops.git")


def test_cancel_while_awaiting_review_closes_the_pull_request(make_e2e_client, tmp_path):
    with review_service(make_e2e_client, "github") as (client, emulator):
        answer = client.post("/mlops/deploy", json=example_request("cancel-review")).json()
        assert answer["status"] == "awaiting_review", answer
        deployment_id = answer["deployment_id"]
        [pull] = emulator.pulls.values()
        bare = tmp_path / "data" / "gitops.git"
        assert git("--git-dir", str(bare), "branch", "--list", pull["head"]).strip()
        services = client.app.state.services
        pushed = manifest_url(services.journal.get(deployment_id).outputs["image_tag"])
        assert httpx.head(pushed, headers=MANIFEST_ACCEPT, timeout=10).status_code == 200

        response = cancel(client, deployment_id)
        assert response.status_code in (200, 202), response.text
        body = wait_status(client, deployment_id, lambda status: status == "cancelled")
        assert body["error"]["step"] == "review"
        assert step(body, "review")["status"] == "cancelled"
        # The pull request is closed through the forge's API, and its branch is gone.
        closes = [r for r in emulator.sent("PATCH") if r.raw_path == f"/repos/acme/gitops/pulls/{pull['number']}"]
        assert [r.json for r in closes] == [{"state": "closed"}]
        assert pull["state"] == "closed" and not pull["merged"]
        assert git("--git-dir", str(bare), "branch", "--list", pull["head"]).strip() == ""
        assert httpx.head(pushed, headers=MANIFEST_ACCEPT, timeout=10).status_code == 404
        assert_nothing_half_made(client, body, bare)


class PausingGitOps:
    """The real GitOps repository, whose commit holds after pushing until the test says so: the
    cancel then arrives after the deploy's commit reached the branch and before the sync."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.pushed = threading.Event()
        self.release = threading.Event()

    def commit(self, request: Any) -> Any:
        result = self.real.commit(request)
        self.pushed.set()
        self.release.wait(WAIT_SECONDS)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_cancel_after_the_commit_was_pushed_reverts_it(make_e2e_client, tmp_path, e2e_namespace):
    client = make_e2e_client()
    services = client.app.state.services
    gitops = PausingGitOps(services.gitops)
    services.gitops = gitops  # the commit step asks the services for the repository on each run
    deployment_id = start(client, example_request("cancel-commit"))
    assert gitops.pushed.wait(WAIT_SECONDS), "the commit step never pushed"
    bare = tmp_path / "data" / "gitops.git"
    [pushed] = git(
        "--git-dir", str(bare), "log", "main", "--format=%H", f"--grep=Deployment-Id: {deployment_id}"
    ).split()
    tree_before = git("--git-dir", str(bare), "rev-parse", f"{pushed}^^{{tree}}")

    response = cancel(client, deployment_id)
    assert response.status_code == 202, response.text
    gitops.release.set()
    body = wait_status(client, deployment_id, lambda status: status == "cancelled")
    assert body["error"]["step"] == "commit"
    assert step(body, "sync")["status"] == "pending"

    # The deploy's commit is on main, followed by its revert: main's files are as before the deploy.
    head = git("--git-dir", str(bare), "rev-parse", "main")
    assert git("--git-dir", str(bare), "rev-parse", "main^") == pushed
    message = git("--git-dir", str(bare), "log", "-1", "--format=%B", "main")
    assert f"Cancels-Deployment-Id: {deployment_id}" in message
    assert "Action: undeploy" in message  # the first deploy of the model: nothing is served after it
    assert git("--git-dir", str(bare), "rev-parse", f"{head}^{{tree}}") == tree_before
    # Nothing ran it.
    runtime = services.local_runtime
    assert [w for w in runtime.list() if w.namespace == e2e_namespace] == []
    services.gitops = gitops.real
    versions = services.mlflow.client.search_model_versions("name='cancel-commit'")
    assert versions == []
    listed = httpx.get(
        f"http://{services.settings.registry.url}/v2/{services.settings.registry.repository_prefix}/cancel-commit/tags/list",
        timeout=10,
    )
    tags = (listed.json().get("tags") or []) if listed.status_code == 200 else []
    assert [t for t in tags if t.endswith(deployment_id[:12])] == []


class HoldingTarget:
    """The service's real target, whose readiness look holds until the test releases it: the cancel
    then arrives while the deploy waits, after its commit was synced and its containers started."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.waiting = threading.Event()
        self.release = threading.Event()

    def look_ready(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting.set()
        self.release.wait(WAIT_SECONDS)
        return self.real.look_ready(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_cancel_after_the_sync_reverts_and_syncs_the_revert(make_e2e_client, tmp_path, e2e_namespace):
    client = make_e2e_client()
    services = client.app.state.services
    runtime = services.local_runtime
    holding = HoldingTarget(services.target)
    services.target = holding  # the sync, wait and clean-up ask the services for the target each time
    try:
        deployment_id = start(client, example_request("cancel-wait"))
        assert holding.waiting.wait(WAIT_SECONDS), "the deploy never waited for its rollout"
        # The sync ran: the cancelled version's containers exist.
        assert [w for w in runtime.list() if w.namespace == e2e_namespace]
        response = cancel(client, deployment_id)
        assert response.status_code == 202, response.text
        holding.release.set()
        body = wait_status(client, deployment_id, lambda status: status == "cancelled")
    finally:
        holding.release.set()
        services.target = holding.real
    assert body["error"]["step"] == "wait"
    bare = tmp_path / "data" / "gitops.git"
    message = git("--git-dir", str(bare), "log", "-1", "--format=%B", "main")
    assert f"Cancels-Deployment-Id: {deployment_id}" in message
    assert "Action: undeploy" in message  # the model's first deploy: nothing was served before it
    # Git and the target agree again: the revert was synced, so nothing of the model runs.
    assert [w for w in runtime.list() if w.namespace == e2e_namespace] == []
    events = services.journal.events(deployment_id)
    logged = [e["data"].get("line", "") for e in events if e["type"] == "log"]
    assert any("nothing was served before this deploy" in line for line in logged), logged[-20:]
    assert services.mlflow.client.search_model_versions("name='cancel-wait'") == []
