"""KubernetesReader (official kubernetes client) against the simulator's Kubernetes API subset."""

from __future__ import annotations

import pytest

from control_api.adapters.argocd.wait import wait_for_sync
from control_api.adapters.kubernetes.services import (
    KubernetesAuthFailed,
    KubernetesReader,
    wait_for_external_address,
)
from control_api.errors import DeploymentTimedOut, ServiceUnavailable
from control_api.settings import KubernetesSettings
from tests.argocd.conftest import APP_NAME, NAMESPACE, application_manifest

LABELS = "app.kubernetes.io/name=iris"


@pytest.fixture
def deployed(argocd, gitops_repo) -> str:
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)
    return sha


def test_service_address_is_the_workload_loopback_ip(kubernetes, deployed, runtime):
    address = kubernetes.service_external_address(NAMESPACE, APP_NAME)

    assert address == runtime.get(NAMESPACE, APP_NAME).address
    assert address.startswith("127.0.0.")
    service = kubernetes.get_service(NAMESPACE, APP_NAME)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"] == address


def test_missing_objects_are_none(kubernetes, sim_server):
    assert kubernetes.get_service(NAMESPACE, "nope") is None
    assert kubernetes.service_external_address(NAMESPACE, "nope") is None
    assert kubernetes.deployment_status(NAMESPACE, "nope") is None


def test_deployment_status_pods_and_events(kubernetes, deployed):
    status = kubernetes.deployment_status(NAMESPACE, APP_NAME)
    pods = kubernetes.list_pods(NAMESPACE, LABELS)
    events = kubernetes.list_events(NAMESPACE, f"involvedObject.name={APP_NAME},involvedObject.kind=Deployment")

    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert [pod["status"]["phase"] for pod in pods] == ["Running"]
    assert kubernetes.list_pods(NAMESPACE, "app.kubernetes.io/name=other") == []
    assert [event["reason"] for event in events] == ["ScalingReplicaSet"]
    assert kubernetes.list_events(NAMESPACE, "involvedObject.name=other") == []


def test_degraded_shows_in_status_pods_and_warning_events(kubernetes, deployed, simulator):
    simulator.set_faults(degraded="Back-off restarting failed container server")

    status = kubernetes.deployment_status(NAMESPACE, APP_NAME)
    pods = kubernetes.list_pods(NAMESPACE, LABELS)
    warnings = kubernetes.list_events(NAMESPACE, "type=Warning")

    assert status["readyReplicas"] == 0
    waiting = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert [event["message"] for event in warnings] == ["Back-off restarting failed container server"]


def test_hostname_fault_gives_a_hostname_and_no_ip(kubernetes, deployed, simulator, runtime):
    simulator.set_faults(hostname=True)

    ingress = kubernetes.get_service(NAMESPACE, APP_NAME)["status"]["loadBalancer"]["ingress"][0]
    assert "ip" not in ingress
    assert kubernetes.service_external_address(NAMESPACE, APP_NAME) == runtime.get(NAMESPACE, APP_NAME).address


def test_wait_for_external_address_returns_once_assigned(kubernetes, deployed, runtime):
    address = wait_for_external_address(kubernetes, NAMESPACE, APP_NAME, timeout=5, poll=0.05)

    assert address == runtime.get(NAMESPACE, APP_NAME).address


def test_wait_for_external_address_times_out_without_ingress(kubernetes, deployed, simulator):
    simulator.set_faults(no_ip=True)

    with pytest.raises(DeploymentTimedOut, match="has no external IP or hostname after 0.3 s"):
        wait_for_external_address(kubernetes, NAMESPACE, APP_NAME, timeout=0.3, poll=0.05)


def test_flaky_5xx_is_retried(kubernetes, deployed, simulator, runtime):
    simulator.set_faults(flaky_5xx=True)

    assert kubernetes.service_external_address(NAMESPACE, APP_NAME) == runtime.get(NAMESPACE, APP_NAME).address
    assert kubernetes.deployment_status(NAMESPACE, APP_NAME)["readyReplicas"] == 1


def test_unauthorized_is_terminal(kubernetes, simulator):
    simulator.set_faults(unauthorized=True)

    with pytest.raises(KubernetesAuthFailed):
        kubernetes.get_service(NAMESPACE, APP_NAME)
    with pytest.raises(KubernetesAuthFailed):
        kubernetes.ping()


def test_wrong_token_is_terminal(sim_server):
    reader = KubernetesReader(KubernetesSettings(api_url=sim_server.url, token="wrong"))
    with pytest.raises(KubernetesAuthFailed):
        reader.get_service(NAMESPACE, APP_NAME)
    reader.close()


def test_ping_and_unreachable_server(kubernetes):
    kubernetes.ping()
    reader = KubernetesReader(KubernetesSettings(api_url="http://127.0.0.1:9", token="t"), timeout_seconds=2)
    with pytest.raises(ServiceUnavailable):
        reader.ping()
    reader.close()
