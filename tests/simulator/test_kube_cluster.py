"""The Kubernetes half of the simulator, driven directly with the FakeKubelet (no Docker): store rules,
Deployment rollouts and status, faults as pod status and events, HPA and PDB status, Services."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.simulator.contracts import ContractChecker, kubernetes_errors
from tests.simulator.kube import Cluster, FakeKubelet, KubeError

DIGEST_IMAGE = "127.0.0.1:5000/models/iris@sha256:" + "ab" * 32
LABELS = {"app.kubernetes.io/name": "iris"}


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def deployment(
    name: str = "iris", *, replicas: int = 1, image: str = DIGEST_IMAGE, env_value: str = "1", **spec_extra: object
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "models", "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "MODEL_VERSION", "value": env_value}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"},
                            },
                        }
                    ],
                },
            },
            **spec_extra,
        },
    }


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}}


@pytest.fixture
def checker(contracts_dir) -> ContractChecker:
    return ContractChecker(contracts_dir)


@pytest.fixture
def cluster(checker) -> Iterator[Cluster]:
    with Cluster(
        FakeKubelet(probe_period_scale=0.05), checker=checker, controller_period=0.05, progress_deadline_scale=0.005
    ) as cluster:
        cluster.apply(NAMESPACE)
        yield cluster
        assert cluster.errors == []
        assert checker.violations == []


def pods(cluster: Cluster) -> list[dict]:
    return cluster.list("Pod", "models", "app.kubernetes.io/name=iris")


def condition(obj: dict, condition_type: str) -> dict:
    """The condition of that type ({} when there is none yet)."""
    return next((item for item in obj.get("status", {}).get("conditions", []) if item["type"] == condition_type), {})


def container_status(pod: dict) -> dict:
    """The first container's status; a pod the kubelet has not seen yet has none."""
    statuses = pod.get("status", {}).get("containerStatuses") or [{"state": {}, "lastState": {}, "ready": False}]
    return statuses[0]


def events(cluster: Cluster, reason: str, kind: str | None = None) -> list[dict]:
    return [event for event in cluster.events("models", involved_kind=kind) if event["reason"] == reason]


def test_apply_needs_the_namespace_and_fills_server_metadata(cluster: Cluster) -> None:
    with pytest.raises(KubeError) as missing:
        cluster.apply({**deployment(), "metadata": {"name": "iris", "namespace": "nowhere", "labels": LABELS}})
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")
    assert missing.value.message == 'namespaces "nowhere" not found'

    created = cluster.apply(deployment())
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert created["spec"]["progressDeadlineSeconds"] == 600 and created["spec"]["revisionHistoryLimit"] == 10
    assert "status" not in created  # controllers write it later

    cluster.wait_idle(10)
    settled = cluster.get("Deployment", "models", "iris")
    unchanged = cluster.apply(deployment())
    assert unchanged["metadata"]["generation"] == 1
    assert unchanged["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    changed = cluster.apply(deployment(env_value="2"))
    assert changed["metadata"]["generation"] == 2

    config_map = cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}})
    assert config_map["metadata"]["namespace"] == "default"


def test_invalid_objects_are_refused_with_422(cluster: Cluster) -> None:
    bad = deployment()
    bad["spec"]["replicas"] = "two"
    with pytest.raises(KubeError) as invalid:
        cluster.apply(bad)
    assert (invalid.value.status, invalid.value.reason) == (422, "Invalid")
    mismatched = deployment()
    mismatched["spec"]["template"]["metadata"]["labels"] = {"other": "x"}
    with pytest.raises(KubeError, match="`selector` does not match template `labels`"):
        cluster.apply(mismatched)
    cluster.apply(deployment())
    moved = deployment()
    moved["spec"]["selector"] = {"matchLabels": {**LABELS, "extra": "y"}}
    moved["spec"]["template"]["metadata"]["labels"] = {**LABELS, "extra": "y"}
    with pytest.raises(KubeError, match="field is immutable"):
        cluster.apply(moved)
    assert cluster.list("Deployment", "models")[0]["metadata"]["generation"] == 1


def test_deployment_creates_replicaset_and_pods_with_kubernetes_status(cluster: Cluster) -> None:
    cluster.apply(deployment(replicas=2))
    cluster.wait_idle(10)
    replica_sets = cluster.list("ReplicaSet", "models")
    assert len(replica_sets) == 1
    replica_set = replica_sets[0]
    template_hash = replica_set["metadata"]["labels"]["pod-template-hash"]
    assert replica_set["metadata"]["name"] == f"iris-{template_hash}"
    assert replica_set["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert replica_set["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert replica_set["status"] == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "observedGeneration": 1,
    }

    live = pods(cluster)
    assert len(live) == 2
    for pod in live:
        assert pod["metadata"]["name"].startswith(f"iris-{template_hash}-")
        assert len(pod["metadata"]["name"]) == len(f"iris-{template_hash}-") + 5
        assert pod["metadata"]["ownerReferences"][0]["name"] == replica_set["metadata"]["name"]
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.244.") and pod["status"]["hostIP"] and pod["status"]["startTime"]
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]} == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        status = container_status(pod)
        assert status["ready"] and status["started"] and status["restartCount"] == 0
        assert "running" in status["state"] and status["image"] == DIGEST_IMAGE and status["imageID"]
        assert pod["status"]["qosClass"] == "Burstable"

    status = cluster.get("Deployment", "models", "iris")["status"]
    assert {
        key: status.get(key)
        for key in (
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
    } == {
        "observedGeneration": 1,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "unavailableReplicas": None,
    }  # zero counts are omitted, as omitempty does
    assert condition({"status": status}, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = condition({"status": status}, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    assert progressing["message"] == f'ReplicaSet "iris-{template_hash}" has successfully progressed.'
    assert [e["message"] for e in events(cluster, "ScalingReplicaSet", "Deployment")] == [
        f"Scaled up replica set iris-{template_hash} from 0 to 2"
    ]


def test_rolling_update_keeps_the_old_pod_until_the_new_one_is_ready(cluster: Cluster) -> None:
    cluster.apply(deployment())
    cluster.wait_idle(10)
    (old_pod,) = pods(cluster)
    cluster.set_faults(image_pull_failure=True)  # the new pod cannot become Ready
    cluster.apply(deployment(env_value="2"))
    wait_for(lambda: len(cluster.list("ReplicaSet", "models")) == 2, what="a second ReplicaSet")
    wait_for(
        lambda: any(
            container_status(p)["state"].get("waiting", {}).get("reason") == "ImagePullBackOff" for p in pods(cluster)
        ),
        what="the new pod in ImagePullBackOff",
    )
    names = {p["metadata"]["name"]: p for p in pods(cluster)}
    assert old_pod["metadata"]["name"] in names and len(names) == 2  # maxSurge 25% of 1 rounds up to 1
    assert container_status(names[old_pod["metadata"]["name"]])["ready"]
    status = cluster.get("Deployment", "models", "iris")["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 1, 1)
    assert status["unavailableReplicas"] == 1
    assert condition({"status": status}, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")

    cluster.clear_faults()
    wait_for(
        lambda: (
            [p["metadata"]["name"] for p in pods(cluster)] != [old_pod["metadata"]["name"]]
            and len(pods(cluster)) == 1
            and container_status(pods(cluster)[0])["ready"]
        ),
        timeout=15,
        what="the old pod replaced by a ready new pod",
    )
    final = wait_for(
        lambda: (
            (d := cluster.get("Deployment", "models", "iris")).get("status", {}).get("updatedReplicas") == 1
            and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
            and d
        )
    )
    assert final["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    old_rs = [rs for rs in cluster.list("ReplicaSet", "models") if rs["spec"]["replicas"] == 0]
    assert len(old_rs) == 1  # kept for rollback (revisionHistoryLimit 10)
    assert any(
        e["message"].startswith(f"Scaled down replica set {old_rs[0]['metadata']['name']} from 1 to 0")
        for e in events(cluster, "ScalingReplicaSet")
    )


def test_rolling_update_stays_within_max_surge_and_max_unavailable(cluster: Cluster) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    cluster.apply(deployment(replicas=4, strategy=strategy, minReadySeconds=1))
    wait_for(
        lambda: cluster.get("Deployment", "models", "iris").get("status", {}).get("availableReplicas") == 4,
        timeout=15,
        what="four available replicas",
    )
    cluster.apply(deployment(replicas=4, env_value="2", strategy=strategy, minReadySeconds=1))
    samples = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with cluster.store.lock:  # one consistent snapshot between controller passes
            live = [p for p in pods(cluster) if "deletionTimestamp" not in p["metadata"]]
            current = cluster.get("Deployment", "models", "iris")
        status = current["status"]
        samples.append((len(live), sum(1 for p in live if condition(p, "Ready").get("status") == "True")))
        if (
            status.get("observedGeneration") == current["metadata"]["generation"]
            and status.get("updatedReplicas") == 4
            and status.get("replicas") == 4
            and status.get("availableReplicas") == 4
        ):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("rollout did not finish")
    assert max(total for total, _ in samples) == 5  # one surge pod at a time
    assert min(ready for _, ready in samples) >= 4  # never below replicas - maxUnavailable
    wait_for(
        lambda: all(p["spec"]["containers"][0]["env"][0]["value"] == "2" for p in pods(cluster)),
        what="the old pods terminated",
    )


def test_min_ready_seconds_delays_availability(cluster: Cluster) -> None:
    cluster.apply(deployment(minReadySeconds=3))
    # Without minReadySeconds, ready and available are counted in the same controller pass.
    at_first_ready = wait_for(
        lambda: (
            (d := cluster.get("Deployment", "models", "iris")).get("status", {}).get("readyReplicas") == 1
            and d["status"]
        ),
        what="the Deployment counting a ready replica",
    )
    assert not at_first_ready.get("availableReplicas")
    assert condition({"status": at_first_ready}, "Available").get("status") != "True"
    final = wait_for(
        lambda: (d := cluster.get("Deployment", "models", "iris"))["status"].get("availableReplicas") == 1 and d,
        timeout=15,
        what="available after minReadySeconds",
    )
    assert condition(final, "Available")["status"] == "True"


def test_revision_history_limit_prunes_old_replicasets(cluster: Cluster) -> None:
    for version in range(1, 5):
        cluster.apply(deployment(env_value=str(version), revisionHistoryLimit=1))
        wait_for(
            lambda: (
                (d := cluster.get("Deployment", "models", "iris")).get("status", {}).get("observedGeneration")
                == d["metadata"]["generation"]
                and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
            ),
            what=f"version {version} rolled out",
        )
    cluster.wait_idle(10)
    revisions = sorted(
        int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
        for rs in cluster.list("ReplicaSet", "models")
    )
    assert revisions == [3, 4]


def test_rollback_to_an_earlier_template_reuses_its_replicaset(cluster: Cluster) -> None:
    def rolled_out(version: str) -> Callable[[], object]:
        return lambda: (
            (d := cluster.get("Deployment", "models", "iris")).get("status", {}).get("observedGeneration")
            == d["metadata"]["generation"]
            and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
            and all(p["spec"]["containers"][0]["env"][0]["value"] == version for p in pods(cluster))
        )

    for version in ("1", "2", "1"):
        cluster.apply(deployment(env_value=version))
        wait_for(rolled_out(version), what=f"template {version} rolled out")
    replica_sets = {
        rs["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]: rs
        for rs in cluster.list("ReplicaSet", "models")
    }
    assert len(replica_sets) == 2
    assert replica_sets["1"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert replica_sets["1"]["spec"]["replicas"] == 1 and replica_sets["2"]["spec"]["replicas"] == 0
    assert (
        cluster.get("Deployment", "models", "iris")["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "3"
    )


def test_recreate_deletes_old_pods_before_creating_new_ones(cluster: Cluster) -> None:
    cluster.apply(deployment(replicas=2, strategy={"type": "Recreate"}))
    cluster.wait_idle(10)
    old_names = {p["metadata"]["name"] for p in pods(cluster)}
    cluster.apply(deployment(replicas=2, env_value="2", strategy={"type": "Recreate"}))
    seen_mixed = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {p["metadata"]["name"] for p in pods(cluster)}
        seen_mixed |= bool(names & old_names) and bool(names - old_names)
        if names and not names & old_names and len(names) == 2:
            break
        time.sleep(0.02)
    assert not seen_mixed
    assert len(pods(cluster)) == 2


def test_crash_loop_reaches_progress_deadline_exceeded(cluster: Cluster) -> None:
    cluster.set_faults(crash_loop=True)
    cluster.apply(deployment())  # progressDeadlineSeconds 600, scaled by 0.005 -> 3 s
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            ),
            None,
        ),
        what="CrashLoopBackOff",
    )
    status = container_status(pod)
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["restartCount"] >= 1 and not status["ready"]
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert (
        f"restarting failed container=server pod={pod['metadata']['name']}_models("
        in status["state"]["waiting"]["message"]
    )
    assert pod["status"]["phase"] == "Running"
    backoff = events(cluster, "BackOff", "Pod")
    assert backoff and backoff[0]["type"] == "Warning"
    assert backoff[0]["message"].startswith("Back-off restarting failed container server in pod ")
    assert "exits with status 1" in cluster.pod_log("models", pod["metadata"]["name"], previous=True)
    # The back-off doubles (10 s, 20 s, ... scaled by probe_period_scale); the message shows the unscaled delay.
    doubled = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["state"].get("waiting", {}).get("message", "").startswith("back-off 20s ")
            ),
            None,
        ),
        what="the second back-off",
    )
    assert container_status(doubled)["restartCount"] >= 2

    final = wait_for(
        lambda: (
            (d := cluster.get("Deployment", "models", "iris"))
            and condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded"
            and d
        ),
        timeout=15,
        what="ProgressDeadlineExceeded",
    )
    progressing = condition(final, "Progressing")
    assert progressing["status"] == "False"
    assert progressing["message"].endswith("has timed out progressing.")
    assert condition(final, "Available")["status"] == "False"


def test_image_pull_failure(cluster: Cluster) -> None:
    cluster.set_faults(image_pull_failure=True)
    cluster.apply(deployment())
    first = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["state"].get("waiting", {}).get("reason") == "ErrImagePull"
            ),
            None,
        ),
        what="ErrImagePull",
    )
    assert first["status"]["phase"] == "Pending"
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["state"].get("waiting", {}).get("reason") == "ImagePullBackOff"
            ),
            None,
        ),
        what="ImagePullBackOff",
    )
    assert container_status(pod)["state"]["waiting"]["message"].startswith(f'Back-off pulling image "{DIGEST_IMAGE}"')
    failed = [e["message"] for e in events(cluster, "Failed", "Pod")]
    assert any(message.startswith(f'Failed to pull image "{DIGEST_IMAGE}": ') for message in failed)
    assert "Error: ErrImagePull" in failed and "Error: ImagePullBackOff" in failed
    with pytest.raises(KubeError, match="is waiting to start: trying and failing to pull image"):
        cluster.pod_log("models", pod["metadata"]["name"])


def test_oom_kill(cluster: Cluster) -> None:
    cluster.set_faults(oom=True)
    cluster.apply(deployment())
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["lastState"].get("terminated", {}).get("reason") == "OOMKilled"
            ),
            None,
        ),
        what="OOMKilled",
    )
    assert container_status(pod)["lastState"]["terminated"]["exitCode"] == 137
    node_events = [e for e in cluster.events("default", involved_kind="Node") if e["reason"] == "SystemOOM"]
    assert node_events and node_events[0]["type"] == "Warning"
    assert node_events[0]["message"].startswith("System OOM encountered, victim process: ")
    wait_for(
        lambda: any(
            container_status(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for p in pods(cluster)
        ),
        what="CrashLoopBackOff after OOM",
    )


def test_unschedulable(cluster: Cluster) -> None:
    cluster.set_faults(unschedulable=True)
    cluster.apply(deployment())
    pod = wait_for(
        lambda: next((p for p in pods(cluster) if p["status"].get("conditions")), None), what="pod conditions"
    )
    assert pod["status"]["phase"] == "Pending" and "nodeName" not in pod["spec"]
    scheduled = condition(pod, "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    event = wait_for(lambda: events(cluster, "FailedScheduling"), what="FailedScheduling")[0]
    assert event["type"] == "Warning" and event["source"]["component"] == "default-scheduler"
    wait_for(lambda: events(cluster, "FailedScheduling")[0]["count"] >= 2, what="a counted retry")
    cluster.clear_faults()
    wait_for(
        lambda: pods(cluster) and container_status(pods(cluster)[0])["ready"], what="scheduled once the fault clears"
    )


def test_readiness_failing(cluster: Cluster) -> None:
    cluster.set_faults(readiness_failing=True)
    cluster.apply(deployment())
    wait_for(lambda: events(cluster, "Unhealthy", "Pod"), what="Unhealthy")
    (pod,) = pods(cluster)
    assert pod["status"]["phase"] == "Running"
    assert condition(pod, "Ready")["status"] == "False"
    assert condition(pod, "Ready")["message"] == "containers with unready status: [server]"
    event = events(cluster, "Unhealthy", "Pod")[0]
    assert event["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404"
    assert event["type"] == "Warning" and event["involvedObject"]["fieldPath"] == "spec.containers{server}"
    wait_for(lambda: events(cluster, "Unhealthy", "Pod")[0]["count"] >= 2, what="repeated probe failures counted")


def test_missing_secret_and_run_as_non_root_are_config_errors(cluster: Cluster) -> None:
    secret_ref = deployment()
    secret_ref["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
    )
    cluster.apply(secret_ref)
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods(cluster)
                if container_status(p)["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
            ),
            None,
        ),
        what="CreateContainerConfigError",
    )
    assert container_status(pod)["state"]["waiting"]["message"] == 'secret "creds" not found'
    assert 'Error: secret "creds" not found' in [e["message"] for e in events(cluster, "Failed", "Pod")]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "models"},
            "stringData": {"token": "s3cret"},
        }
    )
    assert cluster.get("Secret", "models", "creds")["data"] == {"token": "czNjcmV0"}
    wait_for(lambda: container_status(pods(cluster)[0])["ready"], what="the pod starting once the secret exists")

    non_root = deployment(name="strict")
    non_root["metadata"]["labels"] = non_root["spec"]["selector"]["matchLabels"] = {"app": "strict"}
    non_root["spec"]["template"]["metadata"]["labels"] = {"app": "strict"}
    non_root["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    cluster.apply(non_root)
    pod = wait_for(
        lambda: next(
            (
                p
                for p in cluster.list("Pod", "models", "app=strict")
                if container_status(p)["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
            ),
            None,
        ),
        what="runAsNonRoot refusal",
    )
    message = container_status(pod)["state"]["waiting"]["message"]
    assert message == (
        f'container has runAsNonRoot and image will run as root (pod: "{pod["metadata"]["name"]}_models('
        f'{pod["metadata"]["uid"]})", container: server)'
    )


def test_services_load_balancer_ingress_and_faults(cluster: Cluster) -> None:
    def service(name: str, service_type: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "models"},
            "spec": {"type": service_type, "selector": LABELS, "ports": [{"port": 18080, "targetPort": "http"}]},
        }

    cluster.apply(service("internal", "ClusterIP"))
    cluster.apply(service("public", "LoadBalancer"))
    public = wait_for(
        lambda: (s := cluster.get("Service", "models", "public"))["status"]["loadBalancer"].get("ingress") and s
    )
    address = public["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert address.startswith("127.0.1.")
    assert public["spec"]["ports"][0]["nodePort"] >= 30000 and public["spec"]["clusterIP"].startswith("10.")
    # Nothing is ready behind it: kube-proxy accepts and closes at once.
    with socket.create_connection((address, 18080), timeout=2) as connection:
        connection.settimeout(2)
        assert connection.recv(1) == b""
    cluster.wait_idle(5)
    assert cluster.get("Service", "models", "internal")["status"] == {"loadBalancer": {}}

    cluster.set_faults(no_ip=True)
    cluster.apply(service("hidden", "LoadBalancer"))
    cluster.wait_idle(5)
    assert cluster.get("Service", "models", "hidden")["status"] == {"loadBalancer": {}}

    cluster.set_faults(no_ip=False, lb_late_seconds=1.0)
    created = time.monotonic()
    cluster.apply(service("late", "LoadBalancer"))
    wait_for(
        lambda: cluster.get("Service", "models", "late")["status"]["loadBalancer"].get("ingress"), what="late ingress"
    )
    assert time.monotonic() - created >= 0.9

    assert cluster.delete("Service", "models", "public")
    wait_for(lambda: not _connects(address, 18080), what="the listener closed with its Service")


def _connects(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_lb_hostname_resolves_through_etc_hosts_after_the_delay(cluster: Cluster) -> None:
    cluster.set_faults(lb_hostname=True, hostname_unresolvable_seconds=1.5)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "named", "namespace": "models"},
            "spec": {"type": "LoadBalancer", "selector": LABELS, "ports": [{"port": 18081}]},
        }
    )
    service = wait_for(
        lambda: (s := cluster.get("Service", "models", "named"))["status"]["loadBalancer"].get("ingress") and s
    )
    published = time.monotonic()
    (ingress,) = service["status"]["loadBalancer"]["ingress"]
    hostname = ingress["hostname"]
    assert "ip" not in ingress
    assert hostname.startswith("named-models-") and hostname.endswith(".elb.sim.test")
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(hostname, 18081)
    address = wait_for(lambda: _resolve(hostname), timeout=10, what="the hostname resolving")
    assert time.monotonic() - published >= 1.0
    assert address.startswith("127.0.1.")
    assert _connects(address, 18081)
    cluster.close()
    assert _resolve(hostname) is None
    with open("/etc/hosts") as hosts:
        assert cluster.id not in hosts.read()


def _resolve(hostname: str) -> str | None:
    try:
        return socket.getaddrinfo(hostname, None, socket.AF_INET)[0][4][0]
    except socket.gaierror:
        return None


def test_hpa_and_pdb_status(cluster: Cluster) -> None:
    cluster.apply(deployment(replicas=1))
    cluster.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "iris", "namespace": "models"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"},
                "minReplicas": 2,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "iris", "namespace": "models"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
        }
    )
    wait_for(lambda: len([p for p in pods(cluster) if container_status(p)["ready"]]) == 2, what="HPA scaling to 2")
    cluster.wait_idle(10)
    hpa = cluster.get("HorizontalPodAutoscaler", "models", "iris")
    assert (hpa["status"]["currentReplicas"], hpa["status"]["desiredReplicas"]) == (2, 2)
    assert condition(hpa, "AbleToScale")["status"] == "True"
    assert condition(hpa, "ScalingActive")["status"] == "True"
    assert condition(hpa, "ScalingLimited")["reason"] == "DesiredWithinRange"
    assert any(e["message"].startswith("New size: 2;") for e in events(cluster, "SuccessfulRescale"))
    owned_by_hpa = deployment()
    del owned_by_hpa["spec"]["replicas"]
    assert cluster.apply(owned_by_hpa)["spec"]["replicas"] == 2  # an apply without replicas leaves the HPA's
    pdb = cluster.get("PodDisruptionBudget", "models", "iris")["status"]
    assert (pdb["expectedPods"], pdb["currentHealthy"], pdb["desiredHealthy"], pdb["disruptionsAllowed"]) == (
        2,
        2,
        1,
        1,
    )
    assert (pdb["conditions"][0]["type"], pdb["conditions"][0]["status"], pdb["conditions"][0]["reason"]) == (
        "DisruptionAllowed",
        "True",
        "SufficientPods",
    )

    no_request = deployment(name="bare")
    no_request["metadata"]["labels"] = no_request["spec"]["selector"]["matchLabels"] = {"app": "bare"}
    no_request["spec"]["template"]["metadata"]["labels"] = {"app": "bare"}
    del no_request["spec"]["template"]["spec"]["containers"][0]["resources"]
    cluster.apply(no_request)
    cluster.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "bare", "namespace": "models"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bare"},
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        }
    )
    legacy = cluster.apply(
        {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "legacy", "namespace": "models"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"},
                "minReplicas": 2,
                "maxReplicas": 4,
                "targetCPUUtilizationPercentage": 70,
            },
        }
    )
    legacy = wait_for(
        lambda: (
            (h := cluster.get("HorizontalPodAutoscaler", "models", "legacy")).get("status", {}).get("currentReplicas")
            and h
        )
    )
    # v1 has no status.conditions: they are in the annotation gitops-engine reads for v1.
    legacy_conditions = json.loads(legacy["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"])
    assert {c["type"]: c["status"] for c in legacy_conditions}["AbleToScale"] == "True"
    assert "conditions" not in legacy["status"] and legacy["status"]["currentCPUUtilizationPercentage"] == 0
    bare = wait_for(lambda: (h := cluster.get("HorizontalPodAutoscaler", "models", "bare")).get("status") and h)
    active = condition(bare, "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
    assert "missing request for cpu in container server" in active["message"]


def test_deleting_cascades_and_namespace_deletion_empties_it(cluster: Cluster) -> None:
    cluster.apply(deployment(replicas=2))
    # The kubelet reports Killing only for a container it has started.
    wait_for(
        lambda: len([p for p in pods(cluster) if container_status(p)["state"].get("running")]) == 2,
        what="two running pods",
    )
    assert cluster.delete("Deployment", "models", "iris")
    wait_for(lambda: not pods(cluster) and not cluster.list("ReplicaSet", "models"), what="dependents collected")
    assert not cluster.delete("Deployment", "models", "iris")
    assert len([e for e in events(cluster, "Killing", "Pod") if e["message"] == "Stopping container server"]) == 2

    cluster.apply(deployment())
    wait_for(lambda: pods(cluster), what="a pod")
    assert cluster.delete("Namespace", None, "models")
    assert cluster.get("Namespace", None, "models")["metadata"]["deletionTimestamp"]
    wait_for(lambda: cluster.get("Namespace", None, "models") is None, what="namespace removed")
    assert cluster.list("Deployment", "models") == [] and cluster.list("Pod", "models") == []
    with pytest.raises(KubeError, match='namespaces "models" not found'):
        cluster.apply(deployment())


def test_every_object_the_cluster_writes_passes_kubernetes_validation(cluster: Cluster) -> None:
    cluster.apply(deployment(replicas=2))
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "iris", "namespace": "models"},
            "spec": {"type": "LoadBalancer", "selector": LABELS, "ports": [{"port": 18082, "targetPort": "http"}]},
        }
    )
    cluster.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "iris", "namespace": "models"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": LABELS}},
        }
    )
    cluster.wait_idle(10)
    cluster.set_faults(crash_loop=True, unschedulable=False)
    cluster.apply(deployment(replicas=2, env_value="2"))
    wait_for(
        lambda: any(
            container_status(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for p in pods(cluster)
        ),
        what="a crash loop",
    )
    cluster.set_faults(crash_loop=False, unschedulable=True)
    cluster.apply(deployment(name="pending", replicas=1))
    wait_for(lambda: events(cluster, "FailedScheduling"), what="FailedScheduling")
    objects = cluster.store.all_objects()
    kinds = {obj["kind"] for obj in objects}
    assert kinds >= {"Namespace", "Deployment", "ReplicaSet", "Pod", "Service", "Event", "PodDisruptionBudget"}
    invalid = {f"{obj['kind']}/{obj['metadata']['name']}": kubernetes_errors(obj) for obj in objects}
    assert {name: errors for name, errors in invalid.items() if errors} == {}
