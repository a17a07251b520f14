"""The ``argocd`` target end to end against the Argo CD/Kubernetes simulator (tests/simulator).

Argo CD and Kubernetes cannot run here. The simulator models both (validated against
../shared/contracts and kubernetes-validate): Argo CD renders the real GitOps repo with real kustomize
and applies it to the simulated cluster, whose kubelet runs the built image on the local Docker
Engine under the manifest's security context, so the answer's URL really serves the model.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.simulator import DockerKubelet, Simulator
from tests.support.control import example_request
from tests.support.git import commit_count, git_log
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS


@pytest.fixture
def simulated_cluster(tmp_path, contracts_dir, kustomize_cmd, e2e_env, e2e_namespace, docker_client):
    """Argo CD and a cluster whose kubelet runs the built images as the manifests say (DockerKubelet).
    The service's GitOps remote (a bare repo in its data dir) is registered in the AppProjects."""
    bare = tmp_path / "data" / "gitops.git"
    # argocd-server speaks TLS with a self-signed certificate, as a default installation does; the
    # service trusts it through argocd.ca_bundle.
    sim = Simulator(
        DockerKubelet(docker_client),
        work_dir=tmp_path / "simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[e2e_namespace],
        source_repos=[bare.as_uri(), str(bare)],
        tls=True,
    )
    with sim:
        yield sim, sim, sim.cluster
    assert sim.checker.violations == []


@pytest.fixture
def argocd_client(make_e2e_client, simulated_cluster):
    server, _simulator, _runtime = simulated_cluster

    def factory(argocd: dict | None = None, **target):
        return make_e2e_client(
            target={"kind": "argocd", **target},
            argocd={
                "server_url": server.argocd_url,
                "token": server.argocd_token,
                "ca_bundle": str(server.ca_path),
                "failure_grace_seconds": 5,
                **(argocd or {}),
            },
            kubernetes={"api_url": server.kubernetes_url, "token": server.kubernetes_token},
        )

    return factory


def _predict(body: dict) -> dict:
    """A real prediction from the built image, running in the simulated cluster as its manifest says."""
    answer = httpx.post(
        body["endpoints"]["predict"] if "endpoints" in body else body,
        json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == len(ROWS)
    return answer.json()


def _eventually(condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_deploy_through_argocd_roll_back_from_its_side_and_agree_again(
    argocd_client, simulated_cluster, tmp_path, e2e_namespace
):
    _server, _simulator, cluster = simulated_cluster
    client = argocd_client()
    bare = tmp_path / "data" / "gitops.git"
    # The first status call also builds every client and the embedded MLflow store; a check that
    # outlasts the page's 10 s deadline reports "check timed out" and the next call gets its result.
    status = (
        _eventually(
            lambda: (lambda body: body if body["components"]["argocd"]["status"] == "healthy" else None)(
                client.get("/mlops/status").json()
            ),
            timeout=90,
        )
        or client.get("/mlops/status").json()
    )
    assert status["components"]["argocd"]["status"] == "healthy", status

    # The first deploy of a new model: its Application does not exist yet (Argo CD answers 403 for a
    # missing app unless asked with its project).
    first = client.post("/mlops/deploy", json=example_request("iris-argo")).json()
    assert first["status"] == "deployed", first.get("error")
    assert _predict(first)["model_version"] == "1"
    assert commit_count(bare) == 2
    assert "Deployment-Id: " + first["deployment_id"] in git_log(bare, "-1", "--format=%B")
    pod = cluster.list("Pod", e2e_namespace)[0]
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # run as the manifest says

    second = client.post("/mlops/deploy", json=example_request("iris-argo")).json()
    assert second["status"] == "deployed" and second["model_version"] == "2"
    assert _predict(second)["model_version"] == "2"
    model = client.get("/mlops/models/iris-argo", params={"namespace": e2e_namespace}).json()
    assert model["served"]["version"] == "2" and model["drift"] is None

    # The Argo CD UI's rollback (the same API call the UI makes): manual sync is what allows it.
    app_name = f"{e2e_namespace}--iris-argo"
    argocd = client.app.state.services.argocd
    app = argocd.get_application(app_name)
    assert "automated" not in (app["spec"].get("syncPolicy") or {})
    first_entry = next(h for h in app["status"]["history"] if h["revision"] == first["commit"])
    argocd.rollback(app_name, int(first_entry["id"]))
    assert _eventually(lambda: _predict(second)["model_version"] == "1"), "the Argo CD-side rollback did not serve v1"

    # The service sees what Argo CD really runs, not only the branch head.
    model = client.get("/mlops/models/iris-argo", params={"namespace": e2e_namespace}).json()
    assert model["served"]["version"] == "1" and model["served"]["commit"] == first["commit"], model["served"]
    assert model["drift"]["branch_version"] == "2" and model["drift"]["branch_commit"] == second["commit"]
    history = client.get("/mlops/models/iris-argo/history", params={"namespace": e2e_namespace}).json()
    assert history["target_syncs"][0]["kind"] == "rollback" and history["target_syncs"][0]["version"] == "1"
    assert history["commits"][0]["sha"] == second["commit"]  # git itself did not change

    # An API rollback to version 2 is a commit plus a sync: git, Argo CD and the journal agree again.
    rolled = client.post("/mlops/models/iris-argo/rollback", json={"version": "2", "namespace": e2e_namespace}).json()
    assert rolled["status"] == "deployed", rolled.get("error")
    assert _predict(rolled)["model_version"] == "2"
    model = client.get("/mlops/models/iris-argo", params={"namespace": e2e_namespace}).json()
    assert model["drift"] is None and model["served"]["version"] == "2"
    assert model["served"]["commit"] == rolled["commit"] == git_log(bare, "-1", "--format=%H").strip()

    # An undeploy, then at once a redeploy: Argo CD deletes asynchronously and refuses to sync a
    # deleting Application, so the service waits for the deletion before it recreates it.
    undeployed = client.delete("/mlops/models/iris-argo/deployment", params={"namespace": e2e_namespace}).json()
    assert undeployed["status"] == "undeployed", undeployed
    assert cluster.list("Deployment", e2e_namespace) == []  # the finalizer removed the resources
    again = client.post("/mlops/deploy", json=example_request("iris-argo")).json()
    assert again["status"] == "deployed", again.get("error")
    assert _predict(again)["model_version"] == "3"
    application = argocd.get_application(app_name)
    assert "resources-finalizer.argocd.argoproj.io" in application["metadata"]["finalizers"]


def test_automated_sync_mode_deploys(argocd_client, simulated_cluster, e2e_namespace):
    """Argo CD refuses a sync to a SHA under automated sync; the service syncs the branch head once it
    holds the commit's manifests, and waits for the revision Argo CD resolved."""
    _server, _simulator, _cluster = simulated_cluster
    client = argocd_client(argocd={"automated_sync": True})
    body = client.post("/mlops/deploy", json=example_request("iris-auto")).json()
    assert body["status"] == "deployed", body.get("error")
    assert _predict(body)["model_version"] == "1"
    application = client.app.state.services.argocd.get_application(f"{e2e_namespace}--iris-auto")
    assert application["spec"]["syncPolicy"]["automated"]
    assert application["status"]["operationState"]["syncResult"]["revision"] == body["commit"]


@pytest.mark.parametrize(
    "fault,status,code,fragment",
    [
        (
            {"sync_error": "ComparisonError: rpc error: manifest generation failed"},
            "failed",
            "sync_failed",
            "manifest generation failed",
        ),
        ({"readiness_failing": True}, "failed", "rollout_failed", "Readiness probe failed"),
        ({"no_ip": True}, "timed_out", "timed_out", "no external IP or hostname"),
        ({"unauthorized": True}, "failed", "argocd_auth_failed", ""),
    ],
    ids=["sync-error", "degraded", "no-ip", "unauthorized"],
)
def test_faults_give_the_documented_status(argocd_client, simulated_cluster, fault, status, code, fragment):
    _server, simulator, _runtime = simulated_cluster
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
    _server, simulator, _runtime = simulated_cluster
    client = argocd_client()
    simulator.set_faults(**fault)
    body = client.post("/mlops/deploy", json=example_request("iris-ride")).json()
    assert body["status"] == "deployed", body.get("error")
    assert httpx.get(body["endpoints"]["health"], timeout=10).status_code == 200
    if "lb_hostname" in fault:
        service = client.app.state.services.kubernetes.get_service(body["namespace"], "iris-ride")
        ingress = service["status"]["loadBalancer"]["ingress"][0]
        assert "ip" not in ingress and ingress["hostname"] == body["external_ip"]


def test_registered_versions_deploy_without_training_through_argocd(argocd_client, simulated_cluster, e2e_namespace):
    _server, _simulator, cluster = simulated_cluster
    client = argocd_client()
    services = client.app.state.services
    first = client.post("/mlops/deploy", json=example_request("iris-argo-versions")).json()
    assert first["status"] == "deployed", first.get("error")
    # Version 2: version 1's logged model registered again outside any deploy, so it has no image yet.
    registered = services.mlflow.get_version("iris-argo-versions", "1")
    services.mlflow.register("iris-argo-versions", registered.source, registered.run_id, tags={})

    def deploy_version(version: str) -> dict:
        body = client.post(f"/mlops/models/iris-argo-versions/versions/{version}/deploy").json()
        assert body["status"] == "deployed", body.get("error")
        assert body["kind"] == "deploy_version" and body["model_version"] == version
        [deployment] = [
            d for d in cluster.list("Deployment", e2e_namespace) if d["metadata"]["name"] == "iris-argo-versions"
        ]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == body["image_uri"]
        assert _predict(body)["model_version"] == version
        return body

    second = deploy_version("2")
    assert second["image_uri"] != first["image_uri"]  # built from the registered model
    again = deploy_version("1")
    assert again["image_uri"] == first["image_uri"]  # the first deploy's image, by digest

    # A second endpoint of the model serves version 2 beside the default one, which keeps serving 1:
    # its own Application, Deployment and Service with an external address of its own.
    canary = "iris-argo-versions-canary"
    argocd = client.app.state.services.argocd
    body = client.post("/mlops/models/iris-argo-versions/versions/2/deploy", json={"endpoint_name": canary}).json()
    assert body["status"] == "deployed", body.get("error")
    assert (body["endpoint"], body["image_uri"]) == (canary, second["image_uri"])
    application = argocd.get_application(f"{e2e_namespace}--{canary}")
    assert application["status"]["health"]["status"] == "Healthy"
    assert application["metadata"]["labels"]["mlops.io/model-name"] == "iris-argo-versions"
    services_by_name = {s["metadata"]["name"]: s for s in cluster.list("Service", e2e_namespace)}
    assert {"iris-argo-versions", canary} <= set(services_by_name)
    assert services_by_name[canary]["spec"]["selector"]["app.kubernetes.io/name"] == canary
    assert body["inference_url"] != again["inference_url"]
    assert (_predict(again)["model_version"], _predict(body)["model_version"]) == ("1", "2")
    listed = {e["endpoint"]: e for e in client.get("/mlops/endpoints").json()["endpoints"]}
    assert listed[canary]["served"]["version"] == "2" and listed[canary]["served"]["healthy"] is True
    assert listed[canary]["served"]["url"] == body["inference_url"].removesuffix("/predict")
    assert listed["iris-argo-versions"]["served"]["version"] == "1"

    # Undeploying the canary endpoint deletes its Application with cascade; the default one stays.
    removed = client.delete("/mlops/models/iris-argo-versions/deployment", params={"endpoint": canary}).json()
    assert removed["status"] == "undeployed", removed.get("error")
    assert argocd.get_application(f"{e2e_namespace}--{canary}") is None
    assert canary not in {d["metadata"]["name"] for d in cluster.list("Deployment", e2e_namespace)}
    assert _predict(again)["model_version"] == "1"


def test_canary_releases_through_argocd(argocd_client, simulated_cluster, tmp_path, e2e_namespace):
    """The canary flow of tests/e2e/canary_flow.py through Argo CD: each step is an Application sync
    of a commit; the Service's endpoints are the ready pods of both Deployments, spread by the
    simulator's kube-proxy; the analysis reads each canary pod through the API server's pod proxy."""
    from tests.e2e.canary_flow import run_canary_releases

    _server, _simulator, cluster = simulated_cluster
    client = argocd_client()

    def describe() -> str:
        pods = cluster.list("Pod", e2e_namespace)
        return (
            "; ".join(
                f"{p['metadata']['name']} track={p['metadata']['labels'].get('mlops.io/track', 'stable')} "
                f"phase={p['status'].get('phase')} ready="
                + str([c.get("status") for c in p["status"].get("conditions") or [] if c.get("type") == "Ready"])
                for p in pods
            )
            + " || "
            + "; ".join(
                f"{kind} {o['metadata']['name']} replicas={o['spec'].get('replicas')} "
                f"status={ {k: v for k, v in (o.get('status') or {}).items() if k != 'conditions'} } "
                f"owner={[r['name'] for r in o['metadata'].get('ownerReferences') or []]}"
                for kind in ("Deployment", "ReplicaSet")
                for o in cluster.list(kind, e2e_namespace)
            )
        )

    run_canary_releases(client, tmp_path / "data" / "gitops.git", "iris-canary-argo", describe)
