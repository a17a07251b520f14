"""The Argo CD API server's rules, driven over HTTP as the argocd CLI and UI drive them."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.argocd_testing import APP, PROJECT, application, image, model_files, start_sim, stop_sim


@pytest.fixture
def sim(tmp_path, contracts_dir, kustomize_cmd):
    sim = start_sim(
        tmp_path,
        contracts_dir,
        kustomize_cmd,
        tokens={"reader-token": "reader"},
        policy_csv="g, reader, role:readonly\n",
    )
    sim.repo.commit(model_files(image("a")))
    yield sim
    stop_sim(sim)
    assert sim.checker.violations == []


def test_a_missing_app_is_403_unless_the_request_names_its_project(sim):
    # application.go getAppEnforceRBAC: existence is not revealed without the project.
    denied = sim.app()
    assert denied.status_code == 403
    assert denied.json() == {"error": "permission denied", "code": 7, "message": "permission denied"}
    missing = sim.app(project=PROJECT)
    assert missing.status_code == 404
    assert missing.json()["message"] == f'applications.argoproj.io "{APP}" not found'
    assert sim.api.delete(f"/api/v1/applications/{APP}").status_code == 403
    assert sim.api.delete(f"/api/v1/applications/{APP}", params={"project": PROJECT}).status_code == 404
    assert sim.sync().status_code == 403
    assert sim.api.get(f"/api/v1/applications/{APP}/resource-tree").status_code == 403

    sim.create()
    assert sim.app().status_code == 200
    assert sim.app(project=PROJECT).status_code == 200
    assert sim.app(project="default").status_code == 404  # exists, but not in that project


def test_create_is_idempotent_and_refuses_a_different_spec_without_upsert(sim):
    created = sim.create()
    again = sim.create()
    assert (again["metadata"]["uid"], again["metadata"]["generation"]) == (created["metadata"]["uid"], 1)

    changed = application(sim.repo.url)
    changed["spec"]["source"]["targetRevision"] = "HEAD"
    refused = sim.api.post("/api/v1/applications", json=changed)
    assert refused.status_code == 400
    assert refused.json()["message"] == "existing application spec is different, use upsert flag to force update"
    assert sim.app().json()["spec"]["source"]["targetRevision"] == "main"

    changed_labels = application(sim.repo.url, labels={"team": "ml"})
    refused = sim.api.post("/api/v1/applications", json=changed_labels)
    assert refused.status_code == 400  # labels are compared too, not only the spec


def test_upsert_merges_labels_and_replaces_finalizers_while_put_replaces_all_three(sim):
    sim.create(
        application(
            sim.repo.url,
            labels={"owner": "argocd-ui"},
            annotations={"notes": "kept"},
            finalizers=["resources-finalizer.argocd.argoproj.io"],
        )
    )
    upserted = sim.create(application(sim.repo.url, labels={"mlops/model": APP}), upsert="true")
    # application.go updateApp(merge=true): labels and annotations merged, finalizers replaced.
    assert upserted["metadata"]["labels"] == {"owner": "argocd-ui", "mlops/model": APP}
    assert upserted["metadata"]["annotations"] == {"notes": "kept"}
    assert "finalizers" not in upserted["metadata"]

    body = sim.app().json()
    body["metadata"].update(labels={"only": "this"}, finalizers=["resources-finalizer.argocd.argoproj.io"])
    body["metadata"].pop("annotations")
    body.pop("status")
    put = sim.api.put(f"/api/v1/applications/{APP}", json=body)
    assert put.status_code == 200, put.text
    # updateApp(merge=false): what the body does not carry is gone.
    assert put.json()["metadata"]["labels"] == {"only": "this"}
    assert "annotations" not in put.json()["metadata"]
    assert put.json()["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]


def test_put_of_a_missing_app_is_403(sim):
    response = sim.api.put(f"/api/v1/applications/{APP}", json=application(sim.repo.url))
    assert response.status_code == 403


def test_project_repo_and_destination_are_checked_with_argo_cds_messages(sim):
    other_repo = application("https://git.example.com/other/repo.git")
    refused = sim.api.post("/api/v1/applications", json=other_repo, params={"validate": "false"})
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        f"error while validating and normalizing app: application spec for {APP} is invalid: InvalidSpecError: "
        f"application repo https://git.example.com/other/repo.git is not permitted in project '{PROJECT}'"
    )

    elsewhere = application(sim.repo.url, namespace="kube-system")
    refused = sim.api.post("/api/v1/applications", json=elsewhere)
    assert refused.status_code == 400
    assert refused.json()["message"].endswith(
        "InvalidSpecError: application destination server 'https://kubernetes.default.svc' and namespace "
        f"'kube-system' do not match any of the allowed destinations in project '{PROJECT}'"
    )

    unknown_project = application(sim.repo.url, project="nope")
    refused = sim.api.post("/api/v1/applications", json=unknown_project)
    assert refused.status_code == 400
    assert refused.json()["message"] == 'app is not allowed in project "nope", or the project does not exist'

    bad_path = application(sim.repo.url)
    bad_path["spec"]["source"]["path"] = "apps/absent"
    refused = sim.api.post("/api/v1/applications", json=bad_path)
    assert refused.status_code == 400
    assert "InvalidSpecError: Unable to generate manifests in apps/absent" in refused.json()["message"]

    sim.argocd.set_faults(missing_project=True)
    refused = sim.api.post("/api/v1/applications", json=application(sim.repo.url))
    assert refused.status_code == 400
    assert refused.json()["message"] == f'app is not allowed in project "{PROJECT}", or the project does not exist'
    sim.argocd.clear_faults()
    assert sim.app(project=PROJECT).status_code == 404  # nothing was stored


def test_an_unknown_request_field_is_a_contract_violation(sim):
    sim.create()
    response = sim.api.post(f"/api/v1/applications/{APP}/sync", json={"revison": "main"})
    assert response.status_code == 500
    assert "revison" in response.json()["message"]
    assert [v.schema for v in sim.checker.violations] == ["applicationApplicationSyncRequest"]
    unknown_query = sim.api.get(f"/api/v1/applications/{APP}", params={"refesh": "normal"})
    assert unknown_query.status_code == 500
    sim.checker.violations.clear()


def test_a_read_only_token_can_read_but_not_sync_and_can_i_says_so(sim):
    sim.create()
    reader = sim.client("reader-token")
    assert reader.get(f"/api/v1/applications/{APP}").status_code == 200
    refused = reader.post(f"/api/v1/applications/{APP}/sync", json={})
    assert refused.status_code == 403
    assert refused.json()["message"] == f"permission denied: applications, sync, {PROJECT}/{APP}, sub: reader"
    assert reader.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}/*").json() == {"value": "no"}
    assert reader.get(f"/api/v1/account/can-i/applications/get/{PROJECT}/{APP}").json() == {"value": "yes"}
    assert sim.api.get(f"/api/v1/account/can-i/applications/sync/{PROJECT}/*").json() == {"value": "yes"}
    # A reader may not create either; a missing app stays 403 for it even with the project named.
    assert reader.post("/api/v1/applications", json=application(sim.repo.url)).status_code == 403
    reader.close()


def test_sessions_tokens_and_the_public_version_endpoint(sim):
    anonymous = sim.client(token=None)
    assert anonymous.get("/api/version").json()["Version"].startswith("v3.6.0")
    assert anonymous.get(f"/api/v1/applications/{APP}").status_code == 401
    assert anonymous.post("/api/v1/session", json={"username": "admin", "password": "wrong"}).status_code == 401
    token = anonymous.post("/api/v1/session", json={"username": "admin", "password": "sim-password"}).json()["token"]
    session = sim.client(token)
    assert session.get(f"/api/v1/applications/{APP}", params={"project": PROJECT}).status_code == 404
    sim.argocd.expire_sessions()
    assert session.get(f"/api/v1/applications/{APP}").status_code == 401
    anonymous.close()
    session.close()


def test_fault_switches_over_http(sim):
    assert sim.api.post("/_sim/argocd/faults", json={"no_such_switch": True}).status_code == 400
    assert sim.api.post("/_sim/argocd/faults", json={"sync_window": "sometimes"}).status_code == 400
    assert sim.api.post("/_sim/argocd/faults", json={"unauthorized": True}).status_code == 200
    assert sim.api.get("/api/version").status_code == 401
    sim.api.delete("/_sim/argocd/faults")
    sim.api.post("/_sim/argocd/faults", json={"flaky_5xx": True})
    statuses = [sim.api.get("/api/version").status_code for _ in range(4)]
    assert sorted(statuses) == [200, 200, 503, 503]
    sim.api.delete("/_sim/argocd/faults")
    assert sim.api.get("/api/version").status_code == 200


def test_tls_with_the_self_signed_certificate(tmp_path, contracts_dir, kustomize_cmd):
    sim = start_sim(tmp_path, contracts_dir, kustomize_cmd, tls=True)
    try:
        assert sim.server.url.startswith("https://127.0.0.1:")
        assert sim.api.get("/api/version").status_code == 200  # trusts sim.server.ca_path
        with (
            httpx.Client(base_url=sim.server.url) as without_ca,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            without_ca.get("/api/version")
    finally:
        stop_sim(sim)
