"""The application controller and the sync/rollback/delete rules, driven over HTTP."""

from __future__ import annotations

import pytest

from tests.simulator.argocd import projects_from_file
from tests.simulator.argocd_testing import (
    APP,
    NAMESPACE,
    PROJECT,
    application,
    image,
    model_files,
    start_sim,
    stop_sim,
    wait_for,
)

TRACKING = "argocd.argoproj.io/tracking-id"


@pytest.fixture
def sim(tmp_path, contracts_dir, kustomize_cmd):
    sim = start_sim(tmp_path, contracts_dir, kustomize_cmd)
    yield sim
    stop_sim(sim)
    assert sim.checker.violations == []
    assert sim.cluster.errors == []


def deployed_image(sim) -> str | None:
    deployment = sim.cluster.get("Deployment", NAMESPACE, APP)
    return deployment and deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_sync_applies_with_tracking_succeeds_at_once_and_records_history(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create()
    answer = sim.sync(sha)
    assert answer.status_code == 200, answer.text
    assert answer.json()["operation"]["sync"]["revision"] == sha
    assert answer.json()["operation"]["initiatedBy"] == {"username": "admin"}

    app = sim.wait_operation(sha)
    state = app["status"]["operationState"]
    assert (state["phase"], state["message"]) == ("Succeeded", "successfully synced (all tasks run)")
    assert sorted((r["kind"], r["status"], r["message"]) for r in state["syncResult"]["resources"]) == [
        ("Deployment", "Synced", f"deployment.apps/{APP} created"),
        ("Service", "Synced", f"service/{APP} created"),
    ]
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]] == [(0, sha)]

    deployment = sim.cluster.get("Deployment", NAMESPACE, APP)
    assert deployment["metadata"]["annotations"][TRACKING] == f"{APP}:apps/Deployment:{NAMESPACE}/{APP}"
    service = sim.cluster.get("Service", NAMESPACE, APP)
    assert service["metadata"]["annotations"][TRACKING] == f"{APP}:/Service:{NAMESPACE}/{APP}"

    app = sim.wait_reconciled(sha)
    assert {(r["kind"], r["status"], r["health"]["status"]) for r in app["status"]["resources"]} == {
        ("Deployment", "Synced", "Healthy"),
        ("Service", "Synced", "Healthy"),
    }


def test_resource_tree_shows_deployment_replicaset_pod_and_service_ingress(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.sync(sha)
    sim.wait_reconciled(sha)
    tree = sim.api.get(f"/api/v1/applications/{APP}/resource-tree").json()
    by_kind = {node["kind"]: node for node in tree["nodes"]}
    assert set(by_kind) == {"Service", "Deployment", "ReplicaSet", "Pod"}
    assert by_kind["ReplicaSet"]["parentRefs"][0]["name"] == APP
    assert by_kind["Pod"]["parentRefs"][0]["name"] == by_kind["ReplicaSet"]["name"]
    assert by_kind["Pod"]["health"]["status"] == "Healthy"
    assert {"name": "Containers", "value": "1/1"} in by_kind["Pod"]["info"]
    assert by_kind["Service"]["networkingInfo"]["ingress"]
    assert by_kind["Service"]["networkingInfo"]["targetLabels"] == {"app.kubernetes.io/name": APP}


def test_status_is_stale_until_the_reconcile_after_the_operation(sim):
    first = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.sync(first)
    sim.wait_reconciled(first)
    second = sim.repo.commit(model_files(image("b")))
    sim.argocd.set_faults(stale_reconcile_seconds=6)
    sim.sync(second)
    app = sim.wait_operation(second)
    status = app["status"]
    # The operation is Succeeded, but sync/health are the comparison made before it.
    assert status["operationState"]["phase"] == "Succeeded"
    assert status["sync"]["revision"] == first
    assert status["reconciledAt"] <= status["operationState"]["finishedAt"]
    app = sim.wait_reconciled(second)
    assert app["status"]["reconciledAt"] > app["status"]["operationState"]["finishedAt"]


def test_a_new_commit_is_unseen_until_a_refresh(sim):
    first = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.sync(first)
    sim.wait_reconciled(first)
    second = sim.repo.commit(model_files(image("b")))
    sim.argocd.controller.reconcile(APP, force_resolve=False)  # an informer-driven compare uses the ref cache
    assert sim.app().json()["status"]["sync"] == {
        **sim.app().json()["status"]["sync"],
        "revision": first,
        "status": "Synced",
    }
    refreshed = sim.app(refresh="normal").json()
    assert (refreshed["status"]["sync"]["revision"], refreshed["status"]["sync"]["status"]) == (second, "OutOfSync")


def test_another_operation_is_already_in_progress(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.argocd.controller.pause()
    assert sim.sync(sha).status_code == 200
    second = sim.sync(sha)
    assert second.status_code == 400
    assert second.json()["message"] == "error setting app operation: another operation is already in progress"
    sim.argocd.controller.resume()
    sim.wait_operation(sha)
    assert sim.sync(sha).status_code == 200


def test_automated_sync_refuses_another_revision_and_syncs_by_itself(sim):
    first = sim.repo.commit(model_files(image("a")))
    sim.create(application(sim.repo.url, automated=True))
    app = sim.wait_reconciled(first)  # nobody called sync: the controller did
    assert app["status"]["operationState"]["operation"]["initiatedBy"] == {"automated": True}
    refused = sim.sync(first)
    assert refused.status_code == 400
    assert refused.json()["message"] == f"Cannot sync to {first}: auto-sync currently set to main"
    assert sim.sync("main").status_code in (200, 400)  # the target revision itself is allowed (or busy)
    sim.argocd.wait_idle(20)
    rollback = sim.api.post(f"/api/v1/applications/{APP}/rollback", json={"id": 0})
    assert rollback.status_code == 400
    assert rollback.json()["message"] == "rollback cannot be initiated when auto-sync is enabled"
    second = sim.repo.commit(model_files(image("b")))
    sim.app(refresh="normal")
    sim.wait_reconciled(second)
    assert deployed_image(sim) == image("b")


def test_cascading_delete_is_asynchronous_and_refuses_syncs_meanwhile(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.sync(sha)
    sim.wait_reconciled(sha)
    sim.argocd.controller.pause()
    assert sim.api.delete(f"/api/v1/applications/{APP}").json() == {}
    deleting = sim.app().json()
    # application.go Delete adds the resources finalizer; the app stays until the controller is done.
    assert deleting["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert deleting["metadata"]["deletionTimestamp"]
    refused = sim.sync(sha)
    assert refused.status_code == 400
    assert refused.json()["message"] == "application is deleting"
    assert sim.cluster.get("Deployment", NAMESPACE, APP) is not None
    sim.argocd.controller.resume()
    wait_for(lambda: sim.app(project=PROJECT).status_code == 404, "the Application to disappear")
    assert sim.cluster.get("Deployment", NAMESPACE, APP) is None
    assert sim.cluster.get("Service", NAMESPACE, APP) is None


def test_non_cascading_delete_removes_the_app_at_once_and_leaves_its_resources(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create(application(sim.repo.url, finalizers=["resources-finalizer.argocd.argoproj.io"]))
    sim.sync(sha)
    sim.wait_operation(sha)
    sim.api.delete(f"/api/v1/applications/{APP}", params={"cascade": "false"})
    assert sim.app(project=PROJECT).status_code == 404
    assert sim.cluster.get("Deployment", NAMESPACE, APP) is not None


def test_sync_windows_from_the_project_and_the_fault(tmp_path, contracts_dir, kustomize_cmd):
    projects = projects_from_file(source_repos=[(tmp_path / "gitops.git").as_uri()])
    project = next(p for p in projects if p["metadata"]["name"] == PROJECT)
    project["spec"]["syncWindows"] = [
        {"kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["*"], "manualSync": True}
    ]
    sim = start_sim(tmp_path, contracts_dir, kustomize_cmd, projects=projects)
    try:
        sha = sim.repo.commit(model_files(image("a")))
        sim.create()
        assert sim.sync(sha).status_code == 200  # manualSync lets a manual sync through
        sim.wait_operation(sha)
        sim.argocd.set_faults(sync_window="deny")
        refused = sim.sync(sha)
        assert refused.status_code == 403
        assert refused.json()["message"] == "cannot sync: blocked by sync window"
    finally:
        stop_sim(sim)


def test_history_honours_revision_history_limit_and_rollback_by_id(sim):
    manifest = application(sim.repo.url)
    manifest["spec"]["revisionHistoryLimit"] = 2
    shas = [sim.repo.commit(model_files(image("1")))]
    sim.create(manifest)
    for tag in ("1", "2", "3"):
        if tag != "1":
            shas.append(sim.repo.commit(model_files(image(tag))))
        sim.sync(shas[-1])
        sim.wait_operation(shas[-1])
    history = sim.app().json()["status"]["history"]
    assert [(h["id"], h["revision"]) for h in history] == [(1, shas[1]), (2, shas[2])]

    missing = sim.api.post(f"/api/v1/applications/{APP}/rollback", json={"id": 0})
    assert missing.status_code == 400
    assert missing.json()["message"] == f"application {APP} does not have deployment with id 0"
    rolled = sim.api.post(f"/api/v1/applications/{APP}/rollback", json={"id": 1})
    assert rolled.status_code == 200, rolled.text
    app = sim.wait_operation(shas[1])
    assert deployed_image(sim) == image("2")
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]] == [(2, shas[2]), (3, shas[1])]
    # The branch head is still the third commit: the app is OutOfSync after a rollback.
    app = sim.wait_reconciled(shas[2], sync="OutOfSync", health=None)
    assert app["status"]["sync"]["revision"] == shas[2]


def test_prune_only_when_asked(sim):
    first = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.sync(first)
    sim.wait_operation(first)
    second = sim.repo.commit(model_files(image("a"), with_service=False))
    sim.sync(second)
    app = sim.wait_operation(second)
    skipped = [r for r in app["status"]["operationState"]["syncResult"]["resources"] if r["kind"] == "Service"]
    assert skipped[0]["status"] == "PruneSkipped"
    assert sim.cluster.get("Service", NAMESPACE, APP) is not None
    app = sim.wait_reconciled(second, sync="OutOfSync", health=None)
    assert {r["kind"]: r.get("requiresPruning", False) for r in app["status"]["resources"]} == {
        "Deployment": False,
        "Service": True,
    }
    sim.sync(second, prune=True)
    app = sim.wait_operation(second)
    assert sim.cluster.get("Service", NAMESPACE, APP) is None
    assert ("Service", "Pruned") in {
        (r["kind"], r["status"]) for r in app["status"]["operationState"]["syncResult"]["resources"]
    }


def test_sync_error_fault_fails_the_deployment_apply(sim):
    sha = sim.repo.commit(model_files(image("a")))
    sim.create()
    sim.argocd.set_faults(sync_error="admission webhook denied the request")
    sim.sync(sha)
    state = sim.wait_operation(sha)["status"]["operationState"]
    assert state["phase"] == "Failed"
    assert state["message"] == "one or more objects failed to apply, reason: admission webhook denied the request"
    assert "history" not in sim.app().json()["status"]


def test_create_namespace_option_and_a_missing_namespace(sim):
    sha = sim.repo.commit(
        {
            **model_files(image("a")),
            "kustomization.yaml": {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "staging",
                "resources": ["deployment.yaml", "service.yaml"],
            },
        }
    )
    manifest = application(sim.repo.url, namespace="staging")
    sim.create(manifest)
    sim.sync(sha)
    state = sim.wait_operation(sha)["status"]["operationState"]
    assert state["phase"] == "Failed"
    assert 'namespaces "staging" not found' in state["message"]
    sim.sync(sha, syncOptions={"items": ["CreateNamespace=true"]})
    state = sim.wait_operation(sha)["status"]["operationState"]
    assert state["phase"] == "Succeeded", state["message"]
    assert sim.cluster.get("Namespace", None, "staging") is not None
