"""The ``argocd`` target end to end against the Argo CD/Kubernetes simulator (tests/simulator).

Argo CD and Kubernetes cannot run here. The simulator models both (validated against
../shared/contracts and kubernetes-validate): Argo CD renders the real GitOps repo with real kustomize
and applies it to the simulated cluster, whose kubelet runs the built image on the local Docker
Engine under the manifest's security context, so the answer's URL really serves the model.
"""

from __future__ import annotations

import httpx
import pytest

from tests.control.conftest import example_request
from tests.e2e.conftest import commit_count, git_log
from tests.simulator import DockerKubelet, Simulator


@pytest.fixture
def simulated_cluster(tmp_path, contracts_dir, kustomize_cmd, e2e_env, e2e_namespace, docker_client):
    """Argo CD and a cluster whose kubelet runs the built images as the manifests say (DockerKubelet).
    The service's GitOps remote (a bare repo in its data dir) is registered in the AppProjects."""
    bare = tmp_path / "data" / "gitops.git"
    sim = Simulator(DockerKubelet(docker_client), work_dir=tmp_path / "simulator", kustomize_cmd=kustomize_cmd,
                    contracts_dir=contracts_dir, namespaces=[e2e_namespace], source_repos=[bare.as_uri(), str(bare)])
    with sim:
        yield sim, sim, sim.cluster
    assert sim.checker.violations == []


@pytest.fixture
def argocd_client(make_e2e_client, simulated_cluster):
    server, simulator, runtime = simulated_cluster

    def factory(**target):
        return make_e2e_client(
            target={"kind": "argocd", **target},
            argocd={"server_url": server.argocd_url, "token": server.argocd_token},
            kubernetes={"api_url": server.kubernetes_url, "token": server.kubernetes_token},
        )

    return factory


def test_deploy_through_argocd_and_roll_back_from_its_side(argocd_client, simulated_cluster, tmp_path, e2e_namespace):
    server, simulator, runtime = simulated_cluster
    client = argocd_client()
    bare = tmp_path / "data" / "gitops.git"
    assert client.get("/mlops/status").json()["components"]["argocd"]["status"] == "healthy"

    first = client.post("/mlops/deploy", json=example_request("iris-argo")).json()
    assert first["status"] == "deployed", first
    health = httpx.get(first["endpoints"]["health"], timeout=10)
    assert health.status_code == 200 and health.json()["model"]["version"] == "1"
    assert commit_count(bare) == 2
    assert "Deployment-Id: " + first["deployment_id"] in git_log(bare, "-1", "--format=%B")

    second = client.post("/mlops/deploy", json=example_request("iris-argo")).json()
    assert second["status"] == "deployed" and second["model_version"] == "2"
    assert httpx.get(second["endpoints"]["metadata"], timeout=10).json()["model_version"] == "2"

    # The Argo CD UI's rollback: manual sync is what makes Argo CD accept it.
    app_name = f"{e2e_namespace}--iris-argo"
    argocd = client.app.state.services.argocd
    app = argocd.get_application(app_name)
    assert "automated" not in (app["spec"].get("syncPolicy") or {})
    first_entry = next(h for h in app["status"]["history"] if h["revision"] == first["commit"])
    argocd.rollback(app_name, int(first_entry["id"]))
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(second["endpoints"]["metadata"], timeout=5).json()["model_version"] == "1":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("Argo CD-side rollback did not bring version 1 back")


@pytest.mark.parametrize(
    "fault,status,code,fragment",
    [
        ({"sync_error": "ComparisonError: rpc error: manifest generation failed"}, "failed", "sync_failed", "manifest generation failed"),
        ({"readiness_failing": True}, "failed", "sync_failed", "Readiness probe failed"),
        ({"no_ip": True}, "timed_out", "timed_out", "no external IP or hostname"),
        ({"unauthorized": True}, "failed", "argocd_auth_failed", ""),
    ],
    ids=["sync-error", "degraded", "no-ip", "unauthorized"],
)
def test_faults_give_the_documented_status(argocd_client, simulated_cluster, fault, status, code, fragment):
    server, simulator, runtime = simulated_cluster
    # Only no-ip has to run out the clock, and its retry gets the same clock to see the container ready;
    # the others end as soon as the fault shows. A container start on a loaded machine can take 10 s+.
    client = argocd_client(ready_timeout_seconds=30 if status == "timed_out" else 90)
    simulator.set_faults(**fault)
    body = client.post("/mlops/deploy", json=example_request("iris-fault")).json()
    assert body["status"] == status, body
    assert body["error"]["code"] == code, body["error"]
    assert fragment in body["error"]["message"]
    assert body["error"]["step"] in ("sync", "wait")
    if status == "timed_out":
        # timed_out is resumable: clear the fault and retry from the failed step.
        simulator.clear_faults()
        retried = client.post(f"/mlops/deployments/{body['deployment_id']}/retry")
        assert retried.status_code == 202
        import time

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            final = client.get(f"/mlops/deployments/{body['deployment_id']}").json()
            if final["status"] in ("deployed", "failed", "timed_out"):
                break
            time.sleep(0.5)
        assert final["status"] == "deployed", final
        assert [s["attempts"] for s in final["steps"] if s["name"] == "train"] == [1]


@pytest.mark.parametrize("fault", [{"lb_hostname": True}, {"flaky_5xx": True}], ids=["hostname", "flaky-5xx"])
def test_faults_the_service_rides_out(argocd_client, simulated_cluster, fault):
    """A hostname instead of an IP (AWS) is used as the address; flaky 5xx answers are retried."""
    server, simulator, runtime = simulated_cluster
    client = argocd_client()
    simulator.set_faults(**fault)
    body = client.post("/mlops/deploy", json=example_request("iris-ride")).json()
    assert body["status"] == "deployed", body
    assert httpx.get(body["endpoints"]["health"], timeout=10).status_code == 200
    if "lb_hostname" in fault:
        service = client.app.state.services.kubernetes.get_service(body["namespace"], "iris-ride")
        ingress = service["status"]["loadBalancer"]["ingress"][0]
        assert "ip" not in ingress and ingress["hostname"] == body["external_ip"]
