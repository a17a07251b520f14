"""The simulated API server's RBAC: requests are resolved and judged as Kubernetes does, and the
shipped control-service roles allow what the service does (the e2e Kubernetes-training module runs the
whole service under them)."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.kube import Cluster, FakeKubelet, KubeServer
from tests.simulator.kube.rbac import Attributes, RbacPolicy, request_attributes
from tests.support.shipped_rbac import shipped_control_rbac

SA = {"kind": "ServiceAccount", "name": "robot", "namespace": "system"}


def role(kind: str, name: str, rules: list[dict], namespace: str | None = None) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": metadata, "rules": rules}


def binding(kind: str, role_kind: str, name: str, namespace: str | None = None, subject: dict = SA) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": metadata, "roleRef": {"kind": role_kind, "name": name}, "subjects": [subject]}


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods", {}, Attributes("list", "", "pods", "", "a", "")),
        ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, Attributes("watch", "", "pods", "", "a", "")),
        ("GET", "/api/v1/namespaces/a/pods/p/log", {}, Attributes("get", "", "pods", "log", "a", "p")),
        ("POST", "/apis/batch/v1/namespaces/a/jobs", {}, Attributes("create", "batch", "jobs", "", "a", "")),
        ("DELETE", "/apis/batch/v1/namespaces/a/jobs/j", {}, Attributes("delete", "batch", "jobs", "", "a", "j")),
        (
            "DELETE",
            "/apis/batch/v1/namespaces/a/jobs",
            {},
            Attributes("deletecollection", "batch", "jobs", "", "a", ""),
        ),
        ("GET", "/api/v1/namespaces/a", {}, Attributes("get", "", "namespaces", "", "a", "a")),
        ("GET", "/apis/apps/v1/deployments", {}, Attributes("list", "apps", "deployments", "", "", "")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            {},
            Attributes("patch", "apps", "deployments", "", "a", "d"),
        ),
        ("GET", "/version", {}, None),
    ],
)
def test_requests_resolve_to_kubernetes_attributes(method, path, query, expected) -> None:
    assert request_attributes(method, path, query) == expected


def test_rules_match_verbs_groups_resources_subresources_and_names() -> None:
    policy = RbacPolicy(
        [
            role("ClusterRole", "read", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
            binding("ClusterRoleBinding", "ClusterRole", "read"),
            role(
                "Role",
                "jobs",
                [
                    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
                    {"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"], "resourceNames": ["mine"]},
                ],
                namespace="train",
            ),
            binding("RoleBinding", "Role", "jobs", namespace="train"),
            # Bound to someone else: grants this account nothing.
            role("ClusterRole", "admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            binding("ClusterRoleBinding", "ClusterRole", "admin", subject={**SA, "name": "other"}),
        ],
        namespace="system",
        service_account="robot",
    )

    def allowed(method: str, path: str) -> bool:
        attributes = request_attributes(method, path, {})
        assert attributes is not None
        return policy.allows(attributes)

    assert allowed("GET", "/api/v1/namespaces/anywhere/pods/p")
    assert not allowed("GET", "/api/v1/namespaces/anywhere/pods/p/log")  # a subresource is its own grant
    assert allowed("GET", "/api/v1/namespaces/train/pods/p/log")
    assert not allowed("DELETE", "/api/v1/namespaces/anywhere/pods/p")
    assert allowed("POST", "/apis/batch/v1/namespaces/train/jobs")
    assert not allowed("POST", "/apis/batch/v1/namespaces/elsewhere/jobs")  # a Role binds in its namespace
    assert not allowed("DELETE", "/apis/batch/v1/namespaces/train/jobs/j")
    assert allowed("DELETE", "/api/v1/namespaces/train/configmaps/mine")
    assert not allowed("DELETE", "/api/v1/namespaces/train/configmaps/theirs")
    assert not allowed("POST", "/api/v1/namespaces/train/configmaps")  # resourceNames cannot allow a create


def test_the_api_server_refuses_with_kubernetes_wording() -> None:
    policy = RbacPolicy(
        [
            role("ClusterRole", "read", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
            binding("ClusterRoleBinding", "ClusterRole", "read"),
        ],
        namespace="system",
        service_account="robot",
    )
    with Cluster(FakeKubelet()) as cluster, KubeServer(cluster, rbac=policy) as server:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
        headers = {"Authorization": f"Bearer {server.token}"}
        assert httpx.get(f"{server.url}/api/v1/namespaces/a/pods", headers=headers).status_code == 200
        assert httpx.get(f"{server.url}/version", headers=headers).status_code == 200
        refused = httpx.post(f"{server.url}/apis/batch/v1/namespaces/a/jobs", headers=headers, json={})
        assert refused.status_code == 403
        body = refused.json()
        assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
        assert body["message"] == (
            'jobs.batch is forbidden: User "system:serviceaccount:system:robot" cannot create resource "jobs" '
            'in API group "batch" in the namespace "a"'
        )
        log = httpx.get(f"{server.url}/api/v1/namespaces/a/pods/p/log", headers=headers).json()
        assert log["message"] == (
            'pods "p" is forbidden: User "system:serviceaccount:system:robot" cannot get resource "pods/log" '
            'in API group "" in the namespace "a"'
        )
        assert [(method, path) for method, path, _ in server.app.state.refused] == [
            ("POST", "/apis/batch/v1/namespaces/a/jobs"),
            ("GET", "/api/v1/namespaces/a/pods/p/log"),
        ]


@pytest.mark.kustomize
def test_the_shipped_roles_let_the_service_read_everywhere_and_train_only_in_its_namespace(kustomize_cmd) -> None:
    policy = shipped_control_rbac(kustomize_cmd, training_namespace="team-train")

    def allowed(method: str, path: str) -> bool:
        attributes = request_attributes(method, path, {})
        assert attributes is not None
        return policy.allows(attributes)

    assert allowed("GET", "/apis/apps/v1/namespaces/models/deployments/iris")
    assert allowed("GET", "/api/v1/namespaces/models/pods/p/log")
    assert allowed("GET", "/api/v1/namespaces/models/pods/p:8080/proxy/metrics")  # a canary's analysis
    assert not allowed("POST", "/api/v1/namespaces/models/pods/p:8080/proxy/predict")  # reads only
    assert allowed("POST", "/apis/batch/v1/namespaces/team-train/jobs")
    assert allowed("DELETE", "/api/v1/namespaces/team-train/configmaps/script")
    assert allowed("POST", "/api/v1/namespaces/team-train/secrets")
    assert not allowed("GET", "/api/v1/namespaces/team-train/secrets/env")  # written, never read back
    assert not allowed("POST", "/apis/batch/v1/namespaces/models/jobs")
    assert not allowed("DELETE", "/apis/apps/v1/namespaces/models/deployments/iris")  # git and Argo CD do that
