"""A canary in git: a stable Deployment ``E``, a canary Deployment ``E-canary`` whose pods carry one more
label, and one Service selecting the pods of both. The stable Deployment's selector matches the canary's
ReplicaSet and pods too (overlapping selectors); Kubernetes keeps them apart by ControllerRef
(controller_ref_manager.go ``ClaimObject``), and so must the simulator."""

from __future__ import annotations

import copy
import time

import httpx
import pytest

from tests.simulator.argocd_testing import APP, NAMESPACE, image, start_sim, stop_sim, wait_for
from tests.simulator.kube import Cluster, FakeKubelet, KubeServer
from tests.simulator.kube.rbac import Attributes, RbacPolicy, request_attributes

COMPONENT = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
TRACK = "mlops.io/track"


def canary_files(stable_image: str, canary_image: str, *, stable: int = 1, canary: int = 3) -> dict[str, dict]:
    base = {COMPONENT: "inference", NAME: APP}

    def deployment(name: str, labels: dict, image_ref: str, replicas: int) -> dict:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(base)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [
                            {"name": "server", "image": image_ref, "ports": [{"name": "http", "containerPort": 8080}]}
                        ]
                    },
                },
            },
        }

    files = {
        "deployment.yaml": deployment(APP, base, stable_image, stable),
        "deployment-canary.yaml": deployment(f"{APP}-canary", {**base, TRACK: "canary"}, canary_image, canary),
        "service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP, "labels": dict(base)},
            "spec": {"type": "LoadBalancer", "selector": dict(base), "ports": [{"port": 80, "targetPort": "http"}]},
        },
    }
    files["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(files),
    }
    return files


def controller_uid(obj: dict) -> str | None:
    return next((ref["uid"] for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)


def ownership(cluster: Cluster, namespace: str) -> dict[str, dict[str, list[str]]]:
    """Deployment name -> {ReplicaSet name -> names of the pods it controls}, by ControllerRef."""
    deployments = {d["metadata"]["uid"]: d["metadata"]["name"] for d in cluster.list("Deployment", namespace)}
    sets = {rs["metadata"]["uid"]: rs for rs in cluster.list("ReplicaSet", namespace)}
    tree: dict[str, dict[str, list[str]]] = {name: {} for name in deployments.values()}
    for rs in sets.values():
        owner = deployments.get(controller_uid(rs) or "")
        if owner is not None:
            tree[owner][rs["metadata"]["name"]] = []
    for pod in cluster.list("Pod", namespace):
        rs = sets.get(controller_uid(pod) or "")
        owner = deployments.get(controller_uid(rs) or "") if rs else None
        if owner is not None and "deletionTimestamp" not in pod["metadata"]:
            tree[owner][rs["metadata"]["name"]].append(pod["metadata"]["name"])
    return tree


def pod_counts(tree: dict[str, dict[str, list[str]]]) -> dict[str, list[int]]:
    return {deployment: [len(pods) for pods in sets.values()] for deployment, sets in tree.items()}


def wait_pods(cluster: Cluster, stable: int, canary: int) -> dict[str, dict[str, list[str]]]:
    def settled() -> dict | None:
        tree = ownership(cluster, NAMESPACE)
        return tree if pod_counts(tree) == {APP: [stable], f"{APP}-canary": [canary]} else None

    return wait_for(
        settled,
        f"{stable} stable and {canary} canary pods, each under its own ReplicaSet",
        last_seen=lambda: ownership(cluster, NAMESPACE),
    )


@pytest.fixture
def sim(tmp_path, contracts_dir, kustomize_cmd):
    sim = start_sim(tmp_path, contracts_dir, kustomize_cmd)
    yield sim
    stop_sim(sim)
    assert sim.checker.violations == []
    assert sim.cluster.errors == []


@pytest.mark.kustomize
def test_overlapping_selectors_each_deployment_keeps_its_own_replica_set_and_pods(sim) -> None:
    """deployment_controller.go ``getReplicaSetsForDeployment`` claims ReplicaSets through
    ``ClaimReplicaSets`` and replica_set.go ``syncReplicaSet`` claims pods through ``claimPods``: an object
    whose ControllerRef names another controller is ignored even when the selector matches it. So the
    stable Deployment (selector {component, name}) neither counts nor scales down the canary's
    ReplicaSet and pods, which carry the same two labels; each Deployment's status (sync.go
    ``calculateStatus`` over its own ReplicaSets) reports its own replicas, and Argo CD sees both Healthy."""
    sha = sim.repo.commit(canary_files(image("a"), image("b"), stable=1, canary=3))
    sim.create()
    assert sim.sync(sha).status_code == 200
    body = sim.wait_reconciled(sha, health="Healthy")
    assert {(r["kind"], r["name"]) for r in body["status"]["resources"]} == {
        ("Deployment", APP),
        ("Deployment", f"{APP}-canary"),
        ("Service", APP),
    }
    assert all(r["health"]["status"] == "Healthy" for r in body["status"]["resources"])

    cluster = sim.cluster
    stable_selector = {COMPONENT: "inference", NAME: APP}
    canary_rs = next(rs for rs in cluster.list("ReplicaSet", NAMESPACE) if TRACK in rs["metadata"]["labels"])
    # The overlap is real: the stable selector matches the canary's ReplicaSet and pods.
    assert all(canary_rs["metadata"]["labels"].get(k) == v for k, v in stable_selector.items())
    before = wait_pods(cluster, 1, 3)
    assert len(cluster.list("Pod", NAMESPACE, f"{COMPONENT}=inference,{NAME}={APP}")) == 4
    for name, replicas in ((APP, 1), (f"{APP}-canary", 3)):
        status = cluster.get("Deployment", NAMESPACE, name)["status"]
        assert (
            status["replicas"],
            status["updatedReplicas"],
            status["readyReplicas"],
            status["availableReplicas"],
        ) == (
            replicas,
            replicas,
            replicas,
            replicas,
        ), (name, status)
        assert "unavailableReplicas" not in status

    # Scaling the stable Deployment (a new git revision) leaves the canary's pods alone, and the
    # reverse: nobody is scaled down by the other's selector.
    sha2 = sim.repo.commit(canary_files(image("a"), image("b"), stable=2, canary=1))
    assert sim.sync(sha2).status_code == 200
    sim.wait_reconciled(sha2, health="Healthy")
    after = wait_pods(cluster, 2, 1)
    assert list(after[APP]) == list(before[APP])  # the same ReplicaSets: a scale, not a rollout
    assert list(after[f"{APP}-canary"]) == list(before[f"{APP}-canary"])
    [stable_before] = before[APP].values()
    [stable_after] = after[APP].values()
    [canary_before] = before[f"{APP}-canary"].values()
    [canary_after] = after[f"{APP}-canary"].values()
    assert set(stable_before) < set(stable_after)  # scaled up: the old pod kept
    assert set(canary_after) < set(canary_before)  # scaled down by its own ReplicaSet only
    time.sleep(1.0)  # several controller passes: nothing moves
    assert ownership(cluster, NAMESPACE) == after
    deletions = [
        (e["involvedObject"]["name"], e["message"])
        for e in cluster.events(NAMESPACE)
        if e["reason"] == "SuccessfulDelete"
    ]
    assert deletions and all(name == next(iter(before[f"{APP}-canary"])) for name, _ in deletions), deletions
    assert all(status["status"]["availableReplicas"] for status in cluster.list("Deployment", NAMESPACE))


def test_an_orphaned_canary_replica_set_is_adopted_and_scaled_down_by_the_stable_deployment() -> None:
    """``ClaimObject`` adopts orphans the selector matches. Deleting the canary Deployment with
    ``propagationPolicy: Orphan`` leaves its ReplicaSet without a ControllerRef; the stable Deployment's
    selector matches it, so the stable Deployment adopts it (``AdoptReplicaSet``) as an old ReplicaSet
    of a different template and its rolling update scales it to 0: the canary pods go. (The canary's
    pods themselves are never adopted by the stable ReplicaSet: its selector carries its own
    ``pod-template-hash``.)"""
    files = canary_files(image("a"), image("b"), stable=1, canary=2)
    with Cluster(FakeKubelet(), controller_period=0.05) as cluster:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for name in ("deployment.yaml", "deployment-canary.yaml"):
            obj = copy.deepcopy(files[name])
            obj["metadata"]["namespace"] = NAMESPACE
            cluster.apply(obj)
        wait_for(
            lambda: all(
                d.get("status", {}).get("availableReplicas") == d["spec"]["replicas"]
                for d in cluster.list("Deployment", NAMESPACE)
            ),
            "both Deployments available",
        )
        stable = cluster.get("Deployment", NAMESPACE, APP)
        canary_rs = next(rs for rs in cluster.list("ReplicaSet", NAMESPACE) if TRACK in rs["metadata"]["labels"])
        rs_name = canary_rs["metadata"]["name"]

        assert cluster.delete("Deployment", NAMESPACE, f"{APP}-canary", propagation_policy="Orphan")
        adopted = wait_for(
            lambda: (
                rs
                if controller_uid(rs := cluster.get("ReplicaSet", NAMESPACE, rs_name)) == stable["metadata"]["uid"]
                else None
            ),
            "the stable Deployment to adopt the orphaned canary ReplicaSet",
            timeout=10,
        )
        [ref] = adopted["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": APP,
            "uid": stable["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        wait_for(
            lambda: (
                cluster.get("ReplicaSet", NAMESPACE, rs_name)["spec"]["replicas"] == 0
                and not [
                    p
                    for p in cluster.list("Pod", NAMESPACE, f"{TRACK}=canary")
                    if "deletionTimestamp" not in p["metadata"]
                ]
            ),
            "the adopted canary ReplicaSet scaled to 0 and its pods deleted",
            timeout=20,
        )
        status = cluster.get("Deployment", NAMESPACE, APP)["status"]
        assert status["availableReplicas"] == 1
        stable_pods = cluster.list("Pod", NAMESPACE, f"{NAME}={APP},!{TRACK}")
        assert len(stable_pods) == 1
        assert cluster.errors == []


# ---- the pods/proxy subresource: API rules (FakeKubelet) ----

PROXY_READER = [
    {
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
        ],
    },
    {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "reader"},
        "roleRef": {"kind": "ClusterRole", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "system"}],
    },
]


def fake_pod(cluster: Cluster, namespace: str) -> dict:
    files = canary_files(image("a"), image("b"), stable=1, canary=0)
    deployment = copy.deepcopy(files["deployment.yaml"])
    deployment["metadata"]["namespace"] = namespace
    cluster.apply(deployment)
    return wait_for(
        lambda: next((p for p in cluster.list("Pod", namespace) if p.get("status", {}).get("podIP")), None),
        "a pod with an IP",
    )


@pytest.mark.parametrize("with_proxy_rule", [True, False])
def test_pod_proxy_needs_get_on_pods_proxy(with_proxy_rule: bool) -> None:
    """RBAC: the proxy subresource is its own grant (``get`` on ``pods/proxy`` for GET; POST would be
    ``create``); without it the apiserver's 403 names ``pods/proxy``. The ``name`` attribute is the
    ``id`` as written (``pod:8080``), which is what ``resourceNames`` would have to match."""
    objects = copy.deepcopy(PROXY_READER)
    if not with_proxy_rule:
        objects[0]["rules"] = objects[0]["rules"][:1]
    policy = RbacPolicy(objects, namespace="system", service_account="robot")
    with Cluster(FakeKubelet(), controller_period=0.05) as cluster, KubeServer(cluster, rbac=policy) as server:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
        pod = fake_pod(cluster, "models")["metadata"]["name"]
        answer = httpx.get(
            f"{server.url}/api/v1/namespaces/models/pods/{pod}:8080/proxy/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        if with_proxy_rule:
            assert answer.status_code == 503  # allowed through; nothing listens on a FakeKubelet pod
        else:
            assert answer.status_code == 403
            assert answer.json()["message"] == (
                f'pods "{pod}:8080" is forbidden: User "system:serviceaccount:system:robot" cannot get resource '
                '"pods/proxy" in API group "" in the namespace "models"'
            )
        assert request_attributes("GET", f"/api/v1/namespaces/models/pods/{pod}:8080/proxy/metrics", {}) == (
            Attributes("get", "", "pods", "proxy", "models", f"{pod}:8080")
        )


def test_pod_proxy_errors_are_the_apiservers() -> None:
    """pod ``ResourceLocation`` and util/proxy ``Transport.RoundTrip``: a missing pod is 404, a malformed
    id 400 ``invalid pod request``, a pod without an IP 400 ``address not allowed``, a port name 503 (the
    apiserver does not resolve it), and a pod whose port nobody listens on (every FakeKubelet pod) 503
    ``error trying to reach service: dial tcp IP:PORT: connect: connection refused``."""
    with Cluster(FakeKubelet(), controller_period=0.05) as cluster, KubeServer(cluster) as server:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
        pod = fake_pod(cluster, "models")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        headers = {"Authorization": f"Bearer {server.token}"}
        base = f"{server.url}/api/v1/namespaces/models/pods"

        def status(url: str) -> tuple[int, str, str]:
            answer = httpx.get(url, headers=headers)
            body = answer.json()
            assert body["kind"] == "Status" and body["code"] == answer.status_code
            return answer.status_code, body["reason"], body["message"]

        refused = f"error trying to reach service: dial tcp {ip}:8080: connect: connection refused"
        assert status(f"{base}/{name}:8080/proxy/metrics") == (503, "ServiceUnavailable", refused)
        assert status(f"{base}/{name}/proxy/metrics") == (503, "ServiceUnavailable", refused)  # first containerPort
        assert status(f"{base}/http:{name}:8080/proxy/") == (503, "ServiceUnavailable", refused)
        assert status(f"{base}/{name}:http/proxy/metrics") == (
            503,
            "ServiceUnavailable",
            f"error trying to reach service: dial tcp: lookup {ip}:http: no such host",
        )
        assert status(f"{base}/missing:8080/proxy/metrics") == (404, "NotFound", 'pods "missing" not found')
        assert status(f"{base}/ftp:{name}:8080/proxy/") == (400, "BadRequest", f'invalid pod request "ftp:{name}:8080"')
        assert status(f"{base}/a:{name}:80:1/proxy/") == (400, "BadRequest", f'invalid pod request "a:{name}:80:1"')

        cluster.set_faults(unschedulable=True)  # a pod that never gets a node has no IP
        deployment = copy.deepcopy(canary_files(image("a"), image("b"), stable=2, canary=0)["deployment.yaml"])
        deployment["metadata"]["namespace"] = "models"
        cluster.apply(deployment)
        pending = wait_for(
            lambda: next((p for p in cluster.list("Pod", "models") if p["metadata"]["name"] != name), None),
            "a second pod",
        )
        assert not pending.get("status", {}).get("podIP")
        assert status(f"{base}/{pending['metadata']['name']}:8080/proxy/metrics") == (
            400,
            "BadRequest",
            "address not allowed",
        )
