"""gitops-engine's health rules and controller/health.go's aggregation, on objects as the API returns them."""

from __future__ import annotations

import json

import pytest

from tests.simulator.argocd.health import (
    DEGRADED,
    HEALTHY,
    MISSING,
    PROGRESSING,
    SUSPENDED,
    ManagedResource,
    application_health,
    resource_health,
)


def deployment(*, generation=2, observed=2, replicas=2, updated=2, current=2, available=2, reason=None, paused=False):
    conditions = [
        {"type": "Progressing", "status": "False" if reason else "True", "reason": reason or "NewReplicaSetAvailable"}
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {"replicas": replicas, "paused": paused},
        "status": {
            "observedGeneration": observed,
            "replicas": current,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": conditions,
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (deployment(), (HEALTHY, "")),
        (deployment(paused=True), (SUSPENDED, "Deployment is paused")),
        (
            deployment(generation=3),
            (PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation"),
        ),
        (
            deployment(updated=1, current=2, available=1),
            (PROGRESSING, "Waiting for rollout to finish: 1 out of 2 new replicas have been updated..."),
        ),
        (
            deployment(current=3),
            (PROGRESSING, "Waiting for rollout to finish: 1 old replicas are pending termination..."),
        ),
        (
            deployment(available=1),
            (PROGRESSING, "Waiting for rollout to finish: 1 of 2 updated replicas are available..."),
        ),
        (
            deployment(available=0, reason="ProgressDeadlineExceeded"),
            (DEGRADED, 'Deployment "web" exceeded its progress deadline'),
        ),
    ],
)
def test_deployment_health(obj, expected):
    health = resource_health(obj)
    assert (health.status, health.message) == expected


def service(service_type="LoadBalancer", ingress=None):
    status = {"loadBalancer": {"ingress": ingress}} if ingress else {"loadBalancer": {}}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"type": service_type},
        "status": status,
    }


def test_load_balancer_service_progresses_until_it_has_an_ingress_entry():
    assert resource_health(service()).status == PROGRESSING
    assert resource_health(service(ingress=[{"hostname": "a.elb.sim.test"}])).status == HEALTHY
    assert resource_health(service("ClusterIP")).status == HEALTHY


def pod(phase="Running", *, ready=True, waiting=None, last_terminated=None, restart_policy="Always"):
    container = {
        "name": "server",
        "ready": ready,
        "restartCount": 0,
        "state": {"waiting": waiting} if waiting else {"running": {}},
    }
    if last_terminated:
        container["lastState"] = {"terminated": last_terminated}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "ns"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "server", "image": "x"}]},
        "status": {
            "phase": phase,
            "containerStatuses": [container],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_pod_health():
    assert resource_health(pod()).status == HEALTHY
    crash = resource_health(
        pod(ready=False, waiting={"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"})
    )
    assert (crash.status, crash.message) == (DEGRADED, "back-off 10s restarting")
    pull = resource_health(
        pod(phase="Pending", ready=False, waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling"})
    )
    assert pull.status == DEGRADED
    assert (
        resource_health(pod(phase="Pending", ready=False, waiting={"reason": "ContainerCreating"})).status
        == PROGRESSING
    )
    restarted = pod(ready=False, last_terminated={"reason": "Error", "exitCode": 1})
    assert resource_health(restarted).status == DEGRADED
    assert resource_health(pod(ready=False)).status == PROGRESSING
    assert resource_health(pod(phase="Failed", ready=False, restart_policy="Never")).status == DEGRADED


def test_hpa_health_v2_and_v1():
    v2 = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"},
        "status": {
            "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "ok"}]
        },
    }
    assert resource_health(v2).status == HEALTHY
    v2["status"]["conditions"].append(
        {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "no metrics"}
    )
    assert (resource_health(v2).status, resource_health(v2).message) == (DEGRADED, "no metrics")
    v1 = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "annotations": {}},
    }
    assert resource_health(v1).message == "Waiting to Autoscale"
    v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"] = json.dumps(
        [{"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"}]
    )
    assert resource_health(v1).status == HEALTHY


def test_pdb_health_from_the_lua_customisation():
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"}}
    assert (resource_health(pdb).status, resource_health(pdb).message) == (PROGRESSING, "Waiting for status")
    pdb["status"] = {"conditions": [{"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods"}]}
    assert resource_health(pdb).status == HEALTHY
    pdb["status"]["conditions"][0]["reason"] = "SyncFailed"
    assert (resource_health(pdb).status, resource_health(pdb).message) == (
        DEGRADED,
        "PodDisruptionBudget has SyncFailed",
    )


def test_job_health():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {}}
    assert resource_health(job).status == PROGRESSING
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
    assert (resource_health(job).status, resource_health(job).message) == (DEGRADED, "BackoffLimitExceeded")


def test_objects_pending_deletion_are_progressing_and_config_kinds_have_no_health():
    doomed = deployment()
    doomed["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert resource_health(doomed).status == PROGRESSING
    assert resource_health({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}) is None


def managed(obj, *, live=True):
    return ManagedResource(
        obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "",
        obj["kind"],
        obj["metadata"].get("namespace", ""),
        obj["metadata"]["name"],
        obj,
        obj if live else None,
    )


def test_app_health_is_the_worst_resource_health_with_its_causes():
    health, per_resource = application_health(
        [managed(deployment(available=0, reason="ProgressDeadlineExceeded")), managed(service())]
    )
    assert health.status == DEGRADED
    assert health.message == "Caused by apps/Deployment:ns/web"
    assert [h.status for h in per_resource] == [DEGRADED, PROGRESSING]


def test_missing_resources_do_not_degrade_the_app_unless_nothing_is_live():
    health, per_resource = application_health([managed(deployment()), managed(service(), live=False)])
    assert health.status == HEALTHY
    assert per_resource[1].status == MISSING
    nothing, _ = application_health([managed(deployment(), live=False), managed(service(), live=False)])
    assert nothing.status == MISSING


def test_a_progressing_service_keeps_a_healthy_deployment_app_progressing():
    health, _ = application_health([managed(deployment()), managed(service())])
    assert (health.status, health.message) == (PROGRESSING, "Caused by Service:ns/web")
