"""KubernetesReader (official kubernetes client) against the simulator's Kubernetes API subset."""

from __future__ import annotations

import socket
import time

import pytest

from control_api.adapters.argocd.wait import wait_for_sync
from control_api.adapters.kubernetes.services import (
    KubernetesAuthFailed,
    KubernetesReader,
    wait_for_external_address,
)
from control_api.errors import DeploymentTimedOut, ServiceUnavailable
from control_api.settings import KubernetesSettings
from tests.support.argocd_apps import APP_NAME, NAMESPACE, application_manifest

LABELS = "app.kubernetes.io/name=iris"


@pytest.fixture
def deployed(argocd, gitops_repo) -> str:
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)
    return sha


def test_service_address_is_the_workload_loopback_ip(kubernetes, deployed, cluster):
    address = kubernetes.service_external_address(NAMESPACE, APP_NAME)

    assert address == _load_balancer_address(cluster)
    assert address.startswith("127.")
    service = kubernetes.get_service(NAMESPACE, APP_NAME)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"] == address


def test_missing_objects_are_none(kubernetes):
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


def test_degraded_shows_in_status_pods_and_warning_events(kubernetes, argocd, gitops_repo, simulator):
    simulator.set_faults(crash_loop=True)
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)

    def crash_looping() -> list[dict]:
        pods = kubernetes.list_pods(NAMESPACE, LABELS)
        waiting = [
            ((c.get("state") or {}).get("waiting") or {}).get("reason")
            for p in pods
            for c in p["status"].get("containerStatuses") or []
        ]
        return pods if "CrashLoopBackOff" in waiting else []

    pods = _wait(crash_looping, "a pod in CrashLoopBackOff")
    status = kubernetes.deployment_status(NAMESPACE, APP_NAME)
    warnings = kubernetes.list_events(NAMESPACE, "type=Warning")

    assert status.get("readyReplicas", 0) == 0
    waiting = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert {event["reason"] for event in warnings} == {"BackOff"}
    assert all(event["message"].startswith("Back-off restarting failed container server") for event in warnings)


def test_hostname_fault_gives_a_hostname_and_no_ip(kubernetes, argocd, gitops_repo, simulator, cluster):
    simulator.set_faults(lb_hostname=True)
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    ingress = kubernetes.get_service(NAMESPACE, APP_NAME)["status"]["loadBalancer"]["ingress"][0]
    assert "ip" not in ingress
    assert kubernetes.service_external_address(NAMESPACE, APP_NAME) == ingress["hostname"]
    assert socket.gethostbyname(ingress["hostname"]) == _load_balancer_address(cluster)


def test_wait_for_external_address_returns_once_assigned(kubernetes, deployed, cluster):
    address = wait_for_external_address(kubernetes, NAMESPACE, APP_NAME, timeout=5, poll=0.05)

    assert address == _load_balancer_address(cluster)


def test_wait_for_external_address_times_out_without_ingress(kubernetes, argocd, gitops_repo, simulator):
    simulator.set_faults(no_ip=True)
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + "a" * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    _wait(lambda: kubernetes.get_service(NAMESPACE, APP_NAME), "the Service")

    with pytest.raises(DeploymentTimedOut, match=r"has no external IP or hostname after 0\.3 s"):
        wait_for_external_address(kubernetes, NAMESPACE, APP_NAME, timeout=0.3, poll=0.05)


def test_flaky_5xx_is_retried(kubernetes, deployed, simulator, cluster):
    simulator.set_faults(flaky_5xx=True)

    assert kubernetes.service_external_address(NAMESPACE, APP_NAME) == _load_balancer_address(cluster)
    assert kubernetes.deployment_status(NAMESPACE, APP_NAME)["readyReplicas"] == 1


def test_unauthorized_is_terminal(kubernetes, simulator):
    simulator.set_faults(unauthorized=True)

    with pytest.raises(KubernetesAuthFailed):
        kubernetes.get_service(NAMESPACE, APP_NAME)
    with pytest.raises(KubernetesAuthFailed):
        kubernetes.ping()


def test_wrong_token_is_terminal(simulator):
    reader = KubernetesReader(KubernetesSettings(api_url=simulator.kubernetes_url, token="wrong"))
    with pytest.raises(KubernetesAuthFailed):
        reader.get_service(NAMESPACE, APP_NAME)
    reader.close()


def test_ping_and_unreachable_server(kubernetes):
    kubernetes.ping()
    reader = KubernetesReader(KubernetesSettings(api_url="http://127.0.0.1:9", token="t"), timeout_seconds=2)
    with pytest.raises(ServiceUnavailable):
        reader.ping()
    reader.close()


def _load_balancer_address(cluster) -> str:
    """The address the cluster's load balancer published (its hostname resolves to it)."""
    ingress = cluster.get("Service", NAMESPACE, APP_NAME)["status"]["loadBalancer"]["ingress"][0]
    return ingress.get("ip") or socket.gethostbyname(ingress["hostname"])


def _wait(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
