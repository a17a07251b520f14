"""ArgoCDClient + wait_for_sync against the simulator: the happy path, history, rollback, pruning."""

from __future__ import annotations

import pytest

from control_api.adapters.argocd.errors import ArgoCDRequestRejected
from control_api.adapters.argocd.wait import wait_for_sync
from tests.simulator.argocd import DEFAULT_TOKEN as ARGOCD_TOKEN
from tests.support.argocd_apps import APP_NAME, NAMESPACE, application_manifest, model_objects


def test_upsert_creates_then_leaves_an_identical_application_alone(argocd, gitops_repo, sim_server):
    gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    manifest = application_manifest(gitops_repo.url)

    assert argocd.get_application(APP_NAME) is None
    created = argocd.upsert_application(manifest)
    assert created["spec"] == manifest["spec"]
    # The controller compares a new Application on its first reconcile, after the create answered.
    assert _wait_sync_status(argocd)["status"] == "OutOfSync"

    writes_before = [r for r in sim_server.requests if r[0] in ("POST", "PUT")]
    argocd.upsert_application(manifest)
    writes_after = [r for r in sim_server.requests if r[0] in ("POST", "PUT")]
    assert writes_after == writes_before


def test_upsert_updates_a_changed_spec_and_keeps_metadata_it_does_not_own(argocd, gitops_repo, sim_server):
    gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    manifest = application_manifest(gitops_repo.url)
    manifest["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    argocd.upsert_application(manifest)
    # Metadata someone else put on the Application: an operator's annotation, another finalizer.
    stored = argocd.get_application(APP_NAME)
    stored["metadata"].setdefault("annotations", {})["team.example.com/owner"] = "fraud"
    stored["metadata"]["finalizers"].append("example.com/audit")
    _put(sim_server, stored)

    manifest["spec"]["source"]["targetRevision"] = "HEAD"
    updated = argocd.upsert_application(manifest)

    assert updated["spec"]["source"]["targetRevision"] == "HEAD"
    # An update through the API never replaces metadata wholesale (a PUT would).
    assert not [r for r in sim_server.requests if r[0] == "PUT" and r[1] == f"/api/v1/applications/{APP_NAME}"][1:]
    current = argocd.get_application(APP_NAME)
    assert current["spec"]["source"]["targetRevision"] == "HEAD"
    assert current["metadata"]["annotations"]["team.example.com/owner"] == "fraud"
    assert sorted(current["metadata"]["finalizers"]) == ["example.com/audit", "resources-finalizer.argocd.argoproj.io"]


def test_sync_runs_the_revision_and_wait_returns_synced_healthy(argocd, gitops_repo, cluster):
    image = "registry.local/iris@sha256:" + "b" * 64
    sha = gitops_repo.commit_model(image)
    argocd.upsert_application(application_manifest(gitops_repo.url))

    answer = argocd.sync(APP_NAME, sha)
    state = wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    assert answer["operation"]["sync"]["revision"] == sha
    assert (state.sync_status, state.health_status, state.revision) == ("Synced", "Healthy", sha)
    container = _container(cluster)
    service_port = cluster.get("Service", NAMESPACE, APP_NAME)["spec"]["ports"][0]["port"]
    assert (container["image"], container["ports"][0]["containerPort"], service_port) == (image, 8080, 80)
    assert {e["name"]: e["value"] for e in container["env"]} == {"MODEL_NAME": APP_NAME}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    history = state.application["status"]["history"]
    assert [entry["revision"] for entry in history] == [sha]


def test_resource_tree_lists_the_synced_objects(argocd, gitops_repo):
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "c" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    tree = argocd.resource_tree(APP_NAME)

    kinds = sorted((node["kind"], node["name"]) for node in tree["nodes"] if node["kind"] not in ("Pod", "ReplicaSet"))
    assert kinds == [("Deployment", APP_NAME), ("Service", APP_NAME)]
    assert any(node["kind"] == "Pod" for node in tree["nodes"])
    assert any(node["kind"] == "ReplicaSet" for node in tree["nodes"])


def test_rollback_returns_to_an_earlier_history_entry(argocd, gitops_repo, cluster):
    first_image = "registry.local/iris@sha256:" + "1" * 64
    first = gitops_repo.commit_model(first_image)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, first)
    wait_for_sync(argocd, APP_NAME, first, timeout=20, poll=0.05)
    second = gitops_repo.commit_model("registry.local/iris@sha256:" + "2" * 64)
    argocd.sync(APP_NAME, second)
    state = wait_for_sync(argocd, APP_NAME, second, timeout=20, poll=0.05)
    first_entry = next(h for h in state.application["status"]["history"] if h["revision"] == first)

    argocd.rollback(APP_NAME, first_entry["id"])
    sim_app = _wait_operation_done(argocd)

    assert _container(cluster)["image"] == first_image
    assert sim_app["status"]["operationState"]["syncResult"]["revision"] == first
    # main still points at the second commit, so Argo CD reports the rolled-back app OutOfSync.
    assert sim_app["status"]["sync"] == {**sim_app["status"]["sync"], "status": "OutOfSync", "revision": second}


def test_rollback_is_refused_under_automated_sync(argocd, gitops_repo):
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "d" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)
    argocd.upsert_application(application_manifest(gitops_repo.url, automated=True))

    with pytest.raises(ArgoCDRequestRejected, match="auto-sync is enabled"):
        argocd.rollback(APP_NAME, 0)


def test_sync_prunes_workloads_that_left_the_manifests(argocd, gitops_repo, cluster):
    files = model_objects(APP_NAME, "registry.local/iris@sha256:" + "e" * 64)
    other = model_objects("iris-canary", "registry.local/iris@sha256:" + "f" * 64)
    files["canary-deployment.yaml"] = other["deployment.yaml"]
    files["kustomization.yaml"]["resources"].append("canary-deployment.yaml")
    first = gitops_repo.commit_files("apps/iris", files, "with canary")
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, first)
    wait_for_sync(argocd, APP_NAME, first, timeout=20, poll=0.05)
    assert cluster.get("Deployment", NAMESPACE, "iris-canary") is not None

    second = gitops_repo.commit_model("registry.local/iris@sha256:" + "e" * 64)
    argocd.sync(APP_NAME, second, prune=True)
    wait_for_sync(argocd, APP_NAME, second, timeout=20, poll=0.05)

    assert cluster.get("Deployment", NAMESPACE, "iris-canary") is None


def test_delete_application_cascades_to_workloads(argocd, gitops_repo, cluster):
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "9" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    assert argocd.delete_application(APP_NAME) is True
    # Deletion is asynchronous: the Application stays, marked, until its resources are gone.
    argocd.wait_deleted(APP_NAME, timeout=20)
    assert argocd.delete_application(APP_NAME) is False  # deleting what is gone is not an error

    assert argocd.get_application(APP_NAME) is None
    assert cluster.list("Deployment", NAMESPACE) == []


def _container(cluster) -> dict:
    return cluster.get("Deployment", NAMESPACE, APP_NAME)["spec"]["template"]["spec"]["containers"][0]


def _wait_operation_done(argocd, timeout: float = 20) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = argocd.get_application(APP_NAME)
        status = app["status"]
        state = status.get("operationState") or {}
        # As `argocd app wait` decides: the operation finished and a comparison ran after it.
        if (
            "operation" not in app
            and state.get("phase") not in (None, "Running")
            and status.get("reconciledAt", "") >= state.get("finishedAt", "")
        ):
            return app
        time.sleep(0.05)
    raise AssertionError("operation did not finish")


def _wait_sync_status(argocd, timeout: float = 20) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        sync = ((argocd.get_application(APP_NAME) or {}).get("status") or {}).get("sync")
        if sync or time.monotonic() > deadline:
            return sync or {}
        time.sleep(0.05)


def _put(sim_server, application: dict) -> None:
    """An update as another Argo CD client (the UI, kubectl edit) makes it."""
    import httpx

    body = {k: v for k, v in application.items() if k != "status"}
    response = httpx.put(
        f"{sim_server.url}/api/v1/applications/{APP_NAME}",
        json=body,
        headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"},
        verify=False,
    )
    assert response.status_code == 200, response.text
