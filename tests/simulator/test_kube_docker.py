"""The DockerKubelet runs real containers from the base image the way the manifests say, and fails the
way a cluster fails when the manifest and the image disagree. One cluster is shared by the module."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from tests.simulator.contracts import ContractChecker
from tests.simulator.kube import Cluster, DockerKubelet
from tests.simulator.kube.docker_kubelet import LABEL_CLUSTER, LABEL_POD
from tests.simulator.kube.kubelet import CRASH_LOOP_MESSAGE
from tests.simulator.test_kube_cluster import condition, container_status, wait_for

UID = 10001


@pytest.fixture(scope="module")
def module_checker(contracts_dir) -> ContractChecker:
    return ContractChecker(contracts_dir)


@pytest.fixture(scope="module")
def cluster(base_image, module_checker) -> Iterator[Cluster]:
    kubelet = DockerKubelet(probe_period_scale=0.1, sandbox_image=base_image)
    with Cluster(kubelet, checker=module_checker, controller_period=0.1) as cluster:
        yield cluster
        assert cluster.errors == []
    assert module_checker.violations == []
    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster.id}"}) == []
    finally:
        client.close()


@pytest.fixture
def namespace(cluster: Cluster, request) -> Iterator[str]:
    name = request.node.name.replace("_", "-")[:40].strip("-")
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.delete("Namespace", None, name)
    wait_for(lambda: cluster.get("Namespace", None, name) is None, timeout=60, what=f"namespace {name} deleted")


def web_deployment(
    name: str,
    namespace: str,
    image: str,
    *,
    replicas: int = 1,
    command: list[str] | None = None,
    port: int = 8080,
    pod_security: dict | None = None,
    container_security: dict | None = None,
    **container_extra: object,
) -> dict:
    labels = {"app": name}
    container = {
        "name": "server",
        "image": image,
        "command": command or ["python3", "-m", "http.server", str(port)],
        "workingDir": "/tmp",
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "securityContext": container_security
        if container_security is not None
        else {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **container_extra,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": pod_security
                    if pod_security is not None
                    else {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                },
            },
        },
    }


def web_service(namespace: str) -> dict:
    """A LoadBalancer Service in front of every pod labelled ``app: web``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def load_balancer_address(cluster: Cluster, namespace: str, name: str) -> str:
    ingress = wait_for(
        lambda: cluster.get("Service", namespace, name)["status"]["loadBalancer"].get("ingress"), what="ingress"
    )
    return ingress[0]["ip"]


def pods_of(cluster: Cluster, namespace: str, app: str) -> list[dict]:
    return cluster.list("Pod", namespace, f"app={app}")


def docker_container(docker_client, cluster: Cluster, pod: dict):
    found = [
        c
        for c in docker_client.containers.list(
            filters={"label": [f"{LABEL_CLUSTER}={cluster.id}", f"{LABEL_POD}={pod['metadata']['name']}"]}
        )
        if c.labels.get("io.mlops.sim.container") == "server"
    ]
    assert len(found) == 1
    return found[0]


def test_two_replicas_serve_through_the_load_balancer(
    cluster: Cluster, namespace: str, base_image: str, docker_client
) -> None:
    cluster.apply(web_deployment("web", namespace, base_image, replicas=2))
    cluster.apply(web_service(namespace))
    wait_for(
        lambda: cluster.get("Deployment", namespace, "web").get("status", {}).get("availableReplicas") == 2,
        timeout=60,
        what="two available replicas",
    )
    address = load_balancer_address(cluster, namespace, "web")
    for _ in range(40):  # a random pick per connection: all 40 to one pod has probability 2**-39
        with urllib.request.urlopen(f"http://{address}:80/", timeout=5) as answer:
            assert answer.status == 200
    pods = pods_of(cluster, namespace, "web")
    assert len({pod["status"]["podIP"] for pod in pods}) == 2
    for pod in pods:  # each replica answered some of the requests
        assert '"GET / HTTP/1.1" 200' in cluster.pod_log(namespace, pod["metadata"]["name"])
        status = container_status(pod)
        assert status["containerID"].startswith("docker://") and status["imageID"]
        attrs = docker_container(docker_client, cluster, pod).attrs
        host_config = attrs["HostConfig"]
        assert attrs["Config"]["User"] == f"{UID}:{UID}"
        assert host_config["ReadonlyRootfs"] is True
        assert host_config["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host_config["SecurityOpt"]
        assert host_config["Memory"] == 128 * 2**20 and host_config["NanoCpus"] == 500_000_000
        assert str(UID) in host_config["GroupAdd"]
        # The emptyDir is the container's workingDir: a 0777 host directory (see DockerKubelet._run_options).
        assert [bind for bind in host_config["Binds"] if bind.endswith(":/tmp:rw")], host_config["Binds"]


def test_read_only_root_filesystem_is_read_only_and_writing_to_root_fails(
    cluster: Cluster, namespace: str, base_image: str, docker_client
) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": namespace},
            "stringData": {"token": "s3cret"},
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"level": "debug"},
        }
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
        {"name": "PLAIN", "value": "yes"},
    ]
    startup = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 30}
    cluster.apply(web_deployment("ro", namespace, base_image, env=env, startupProbe=startup))
    pod = wait_for(
        lambda: next((p for p in pods_of(cluster, namespace, "ro") if container_status(p).get("ready")), None),
        timeout=60,
        what="ready pod",
    )
    container = docker_container(docker_client, cluster, pod)
    exit_code, output = container.exec_run(["touch", "/written-to-root"])
    assert exit_code != 0 and b"Read-only file system" in output
    assert container.exec_run(["touch", "/tmp/written-to-emptydir"])[0] == 0
    assert container.exec_run(["id", "-u"])[1].strip() == str(UID).encode()
    assert container.exec_run(["sh", "-c", "echo $TOKEN $LEVEL $PLAIN"])[1].strip() == b"s3cret debug yes"
    assert container_status(pod)["started"] is True  # the startup probe passed

    # A program that writes to / cannot run under this manifest: it crashes, as it would on a cluster.
    writes_root = ["python3", "-c", "open('/state.json', 'w').write('{}')"]
    cluster.apply(web_deployment("writer", namespace, base_image, command=writes_root))
    crashed = wait_for(
        lambda: next(
            (p for p in pods_of(cluster, namespace, "writer") if container_status(p)["lastState"].get("terminated")),
            None,
        ),
        timeout=60,
        what="the writer's container terminated",
    )
    terminated = container_status(crashed)["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Error", 1)
    wait_for(
        lambda: any(
            container_status(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for p in pods_of(cluster, namespace, "writer")
        ),
        timeout=60,
        what="CrashLoopBackOff",
    )
    crashed = pods_of(cluster, namespace, "writer")[0]
    assert "Read-only file system" in cluster.pod_log(namespace, crashed["metadata"]["name"], previous=True)


def test_manifests_needing_root_fail(cluster: Cluster, namespace: str, base_image: str) -> None:
    # The base image's user is root: runAsNonRoot without runAsUser is refused before any container starts.
    cluster.apply(web_deployment("nonroot", namespace, base_image, pod_security={"runAsNonRoot": True}))
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods_of(cluster, namespace, "nonroot")
                if container_status(p)["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
            ),
            None,
        ),
        timeout=60,
        what="the refusal",
    )
    assert container_status(pod)["state"]["waiting"]["message"] == (
        f'container has runAsNonRoot and image will run as root (pod: "{pod["metadata"]["name"]}_{namespace}'
        f'({pod["metadata"]["uid"]})", container: server)'
    )
    assert pod["status"]["phase"] == "Pending"
    assert any(
        e["message"].startswith("Error: container has runAsNonRoot")
        for e in cluster.events(namespace, "Pod", pod["metadata"]["name"])
        if e["reason"] == "Failed"
    )

    # Binding port 80 needs root (or NET_BIND_SERVICE, dropped here): the server dies at start.
    cluster.apply(web_deployment("lowport", namespace, base_image, port=80))
    pod = wait_for(
        lambda: next(
            (p for p in pods_of(cluster, namespace, "lowport") if container_status(p)["lastState"].get("terminated")),
            None,
        ),
        timeout=60,
        what="the low-port server terminated",
    )
    assert "PermissionError" in cluster.pod_log(namespace, pod["metadata"]["name"], previous=True)


def test_faults_on_real_containers(cluster: Cluster, namespace: str, base_image: str) -> None:
    cluster.set_faults(oom=True)
    try:
        cluster.apply(web_deployment("hog", namespace, base_image))
        pod = wait_for(
            lambda: next(
                (p for p in pods_of(cluster, namespace, "hog") if container_status(p)["lastState"].get("terminated")),
                None,
            ),
            timeout=60,
            what="the memory hog killed",
        )
    finally:
        cluster.clear_faults()
    terminated = container_status(pod)["lastState"]["terminated"]
    # Docker 20.10 on this kernel (cgroup v1) reports the kernel's OOM kill as OOMKilled with exit 137.
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    cluster.delete("Deployment", namespace, "hog")  # fewer containers for the kubelet to watch

    cluster.set_faults(crash_loop=True)
    try:
        cluster.apply(web_deployment("crasher", namespace, base_image))
        pod = wait_for(
            lambda: next(
                (
                    p
                    for p in pods_of(cluster, namespace, "crasher")
                    if container_status(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
                ),
                None,
            ),
            timeout=60,
            what="CrashLoopBackOff",
        )
    finally:
        cluster.clear_faults()
    assert container_status(pod)["lastState"]["terminated"]["exitCode"] == 1
    assert CRASH_LOOP_MESSAGE in cluster.pod_log(namespace, pod["metadata"]["name"], previous=True)
    cluster.delete("Deployment", namespace, "crasher")

    cluster.set_faults(readiness_failing=True)
    try:
        cluster.apply(web_deployment("unready", namespace, base_image))
        # Probes before the server listens fail with "connection refused"; then the fault's path answers 404.
        (name,) = wait_for(lambda: [p["metadata"]["name"] for p in pods_of(cluster, namespace, "unready")])
        wait_for(
            lambda: [
                e
                for e in cluster.events(namespace, "Pod", name)
                if e["reason"] == "Unhealthy"
                and e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404"
            ],
            timeout=60,
            what="an Unhealthy event for the 404",
        )
        pod = cluster.get("Pod", namespace, name)
        assert pod["status"]["phase"] == "Running" and condition(pod, "Ready")["status"] == "False"
    finally:
        cluster.clear_faults()
    cluster.delete("Deployment", namespace, "unready")

    # The startup probe holds the liveness probe back until the server answers: then /missing is a 404.
    failing_liveness = web_deployment(
        "dead",
        namespace,
        base_image,
        startupProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 100},
        livenessProbe={"httpGet": {"path": "/missing", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2},
    )
    cluster.apply(failing_liveness)
    pod = wait_for(
        lambda: next(
            (p for p in pods_of(cluster, namespace, "dead") if container_status(p).get("restartCount", 0) >= 1), None
        ),
        timeout=60,
        what="a restart after liveness failures",
    )
    events = cluster.events(namespace, "Pod", pod["metadata"]["name"])
    assert any(
        e["reason"] == "Killing" and e["message"] == "Container server failed liveness probe, will be restarted"
        for e in events
    )
    assert any(
        e["reason"] == "Unhealthy" and e["message"] == "Liveness probe failed: HTTP probe failed with statuscode: 404"
        for e in events
    )

    missing_image = "127.0.0.1:5000/mlops-sim/missing@sha256:" + "0" * 64
    cluster.apply(web_deployment("ghost", namespace, missing_image))
    pod = wait_for(
        lambda: next(
            (
                p
                for p in pods_of(cluster, namespace, "ghost")
                if container_status(p)["state"].get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
            ),
            None,
        ),
        timeout=60,
        what="pull failure",
    )
    failed = [
        e["message"] for e in cluster.events(namespace, "Pod", pod["metadata"]["name"]) if e["reason"] == "Failed"
    ]
    assert any(message.startswith(f'Failed to pull image "{missing_image}": ') for message in failed)
    assert condition(pod, "Ready")["status"] == "False"


def test_kube_proxy_refuses_without_ready_endpoints(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "empty", "namespace": namespace},
            "spec": {"type": "LoadBalancer", "selector": {"app": "nothing"}, "ports": [{"port": 8089}]},
        }
    )
    address = wait_for(
        lambda: cluster.get("Service", namespace, "empty")["status"]["loadBalancer"].get("ingress"), what="ingress"
    )[0]["ip"]
    with socket.create_connection((address, 8089), timeout=2) as connection:
        connection.settimeout(2)
        assert connection.recv(1) == b""


def test_image_is_pulled_from_the_registry_by_digest(
    cluster: Cluster, namespace: str, base_image: str, registry_url: str, docker_client
) -> None:
    repository = f"{registry_url}/mlops-sim/kube-pull-test"
    docker_client.images.get(base_image).tag(repository, "base")
    try:
        for _ in docker_client.images.push(repository, "base", stream=True, decode=True):
            pass
        digest = next(
            d for d in docker_client.images.get(f"{repository}:base").attrs["RepoDigests"] if d.startswith(repository)
        )
    finally:
        docker_client.images.remove(f"{repository}:base")
    deployment = web_deployment("pulled", namespace, digest)
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    cluster.apply(deployment)
    pod = wait_for(
        lambda: next((p for p in pods_of(cluster, namespace, "pulled") if container_status(p).get("ready")), None),
        timeout=60,
        what="the pulled image serving",
    )
    assert container_status(pod)["imageID"] == digest
    messages = [(e["reason"], e["message"]) for e in cluster.events(namespace, "Pod", pod["metadata"]["name"])]
    assert ("Pulling", f'Pulling image "{digest}"') in messages
    assert any(
        reason == "Pulled" and message.startswith(f'Successfully pulled image "{digest}" in ')
        for reason, message in messages
    )


def test_a_service_spreads_connections_over_the_pods_of_two_deployments(
    cluster: Cluster, namespace: str, base_image: str
) -> None:
    """A Service selects pods, not a Deployment: a stable and a canary Deployment whose pods share the
    selected label both get connections (what a canary by replica ratio relies on)."""
    for track in ("stable", "canary"):
        deployment = web_deployment(f"web-{track}", namespace, base_image)
        labels = {"app": "web", "track": track}
        deployment["spec"]["selector"]["matchLabels"] = labels
        deployment["spec"]["template"]["metadata"]["labels"] = labels
        cluster.apply(deployment)
    cluster.apply(web_service(namespace))
    for track in ("stable", "canary"):
        wait_for(
            lambda track=track: (
                cluster.get("Deployment", namespace, f"web-{track}").get("status", {}).get("availableReplicas") == 1
            ),
            timeout=60,
            what=f"the {track} replica available",
        )
    address = load_balancer_address(cluster, namespace, "web")
    for _ in range(40):  # a random pick per connection: all 40 to one pod has probability 2**-39
        with urllib.request.urlopen(f"http://{address}:80/", timeout=5) as answer:
            assert answer.status == 200
    pods = cluster.list("Pod", namespace, "app=web")
    assert sorted(pod["metadata"]["labels"]["track"] for pod in pods) == ["canary", "stable"]
    for pod in pods:
        assert '"GET / HTTP/1.1" 200' in cluster.pod_log(namespace, pod["metadata"]["name"]), pod["metadata"]["name"]
