"""The simulated Kubernetes HTTP API: bearer token, the read endpoints clients use, Status errors,
faults of the API itself, and the /_sim/kube/faults controls."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.simulator.contracts import ContractChecker
from tests.simulator.kube import Cluster, FakeKubelet, KubeServer
from tests.simulator.test_kube_cluster import LABELS, NAMESPACE, deployment, wait_for

TOKEN = "test-kube-token"


@pytest.fixture
def checker(contracts_dir) -> ContractChecker:
    return ContractChecker(contracts_dir)


@pytest.fixture
def server(checker) -> Iterator[KubeServer]:
    with Cluster(FakeKubelet(probe_period_scale=0.05), checker=checker, controller_period=0.05) as cluster:
        cluster.apply(NAMESPACE)
        with KubeServer(cluster, token=TOKEN) as server:
            yield server
        assert cluster.errors == []
    assert checker.violations == []


@pytest.fixture
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
        yield client


def test_token_is_required(server: KubeServer, api: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.get(f"{server.url}/version", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    assert api.get("/version").json()["gitVersion"].startswith("v1.")


def test_read_endpoints(server: KubeServer, api: httpx.Client) -> None:
    cluster = server.cluster
    cluster.apply(deployment(replicas=2))
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "iris", "namespace": "models"},
            "spec": {"type": "LoadBalancer", "selector": LABELS, "ports": [{"port": 18090, "targetPort": "http"}]},
        }
    )
    wait_for(lambda: cluster.get("Deployment", "models", "iris").get("status", {}).get("availableReplicas") == 2)

    service = api.get("/api/v1/namespaces/models/services/iris").json()
    assert service["kind"] == "Service"
    wait_for(lambda: api.get("/api/v1/namespaces/models/services/iris").json()["status"]["loadBalancer"].get("ingress"))
    assert api.get("/apis/apps/v1/namespaces/models/deployments/iris").json()["status"]["availableReplicas"] == 2

    replica_sets = api.get(
        "/apis/apps/v1/namespaces/models/replicasets", params={"labelSelector": "app.kubernetes.io/name=iris"}
    ).json()
    assert replica_sets["kind"] == "ReplicaSetList" and len(replica_sets["items"]) == 1
    assert "kind" not in replica_sets["items"][0]  # list items carry no kind, as the API server sends them
    pod_list = api.get(
        "/api/v1/namespaces/models/pods", params={"labelSelector": "app.kubernetes.io/name in (iris)"}
    ).json()
    assert len(pod_list["items"]) == 2
    assert (
        api.get("/api/v1/namespaces/models/pods", params={"labelSelector": "app.kubernetes.io/name=other"}).json()[
            "items"
        ]
        == []
    )
    name = pod_list["items"][0]["metadata"]["name"]
    pod = api.get(f"/api/v1/namespaces/models/pods/{name}").json()
    assert pod["status"]["phase"] == "Running"

    log = api.get(f"/api/v1/namespaces/models/pods/{name}/log", params={"container": "server", "tailLines": 5})
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert "started" in log.text
    previous = api.get(f"/api/v1/namespaces/models/pods/{name}/log", params={"previous": "true"})
    assert previous.status_code == 400
    assert previous.json()["message"] == f'previous terminated container "server" in pod "{name}" not found'

    events = api.get(
        "/api/v1/namespaces/models/events",
        params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind=Pod"},
    ).json()["items"]
    assert {event["reason"] for event in events} >= {"Scheduled", "Pulled", "Created", "Started"}
    assert all(event["involvedObject"]["name"] == name for event in events)

    missing = api.get("/apis/apps/v1/namespaces/models/deployments/nope")
    assert missing.status_code == 404
    body = missing.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "NotFound", 404)
    assert body["message"] == 'deployments.apps "nope" not found'
    assert api.get("/api/v1/namespaces/models/pods/nope/log").json()["message"] == 'pods "nope" not found'


def test_api_faults_and_fault_controls(server: KubeServer, api: httpx.Client) -> None:
    assert httpx.post(f"{server.url}/_sim/kube/faults", json={"no_such_switch": True}).status_code == 400
    assert httpx.post(f"{server.url}/_sim/kube/faults", json={"api_unauthorized": True}).status_code == 200
    assert api.get("/version").status_code == 401
    assert httpx.delete(f"{server.url}/_sim/kube/faults").status_code == 200
    assert api.get("/version").status_code == 200

    httpx.post(f"{server.url}/_sim/kube/faults", json={"api_flaky_5xx": True})
    codes = [api.get("/version").status_code for _ in range(6)]
    assert sorted(set(codes)) == [200, 503] and codes.count(503) == 3
    assert server.cluster.faults.api_flaky_5xx
    httpx.delete(f"{server.url}/_sim/kube/faults")
    assert not server.cluster.faults.api_flaky_5xx
