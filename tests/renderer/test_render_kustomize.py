"""The rendered tree builds with real `kubectl kustomize` into valid, well-formed Kubernetes objects."""

from __future__ import annotations

import kubernetes_validate
import pytest
from render_helpers import DIGEST_V1, DIGEST_V2, KUBERNETES_VERSION, by_kind, full_spec, minimal_spec

pytestmark = pytest.mark.kustomize

VERSION_LABEL = "app.kubernetes.io/version"


def _validate_all(documents):
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_minimal_build_is_schema_valid_and_complete(build_model):
    documents = build_model(minimal_spec())
    _validate_all(documents)
    objects = by_kind(documents)
    assert sorted(objects) == ["Deployment", "Service"]
    for document in documents:
        assert document["metadata"]["name"] == "iris"
        assert document["metadata"]["namespace"] == "mlops-models"

    deployment = objects["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"127.0.0.1:5000/mlops/iris@{DIGEST_V1}"
    assert deployment["spec"]["replicas"] == 1
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "512Mi"},
    }
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env == {"MODEL_NAME": "iris", "MODEL_VERSION": "3"}


def test_probes_security_and_metrics(build_model):
    deployment = by_kind(build_model(minimal_spec()))["Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_labels_annotations_and_immutable_selectors(build_model):
    objects = by_kind(build_model(minimal_spec()))
    deployment, service = objects["Deployment"], objects["Service"]
    expected_labels = {
        "app.kubernetes.io/name": "iris",
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/version": "3",
        "app.kubernetes.io/managed-by": "mlops-control",
    }
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        service["metadata"]["labels"],
    ):
        assert labels == expected_labels
    selector = {"app.kubernetes.io/name": "iris", "app.kubernetes.io/component": "inference"}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert service["spec"]["selector"] == selector
    for document in objects.values():
        assert document["metadata"]["annotations"] == {
            "mlops.io/run-id": "0f3c2a9d8e7b4c6a9d8e7b4c6a9d8e7b",
            "mlops.io/model-uri": "models:/iris/3",
            "mlops.io/deployment-id": "dep-0001",
        }


def test_two_endpoints_of_one_model_select_only_their_own_pods(build_models):
    """A model's default endpoint and a named one build side by side in one namespace: each has its
    own Deployment and Service, and neither Service selects the other's pods."""
    default = minimal_spec()
    staging = minimal_spec(endpoint="iris-staging", model_version="4")
    grouped = build_models([default, staging])
    assert sorted(grouped) == [("mlops-models", "iris"), ("mlops-models", "iris-staging")]
    pods = {}
    for name in ("iris", "iris-staging"):
        objects = by_kind(grouped[("mlops-models", name)])
        _validate_all(objects.values())
        pods[name] = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
        assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == objects["Service"]["spec"]["selector"]
        container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        # The model server still answers with the model's name; only the workload is renamed.
        assert {"name": "MODEL_NAME", "value": "iris"} in container["env"]
    for service_name, own in (("iris", "iris"), ("iris-staging", "iris-staging")):
        selector = by_kind(grouped[("mlops-models", service_name)])["Service"]["spec"]["selector"]
        for pod_owner, labels in pods.items():
            selected = all(labels.get(key) == value for key, value in selector.items())
            assert selected == (pod_owner == own), (service_name, pod_owner)
    assert pods["iris-staging"]["mlops.io/model-name"] == "iris"
    assert "mlops.io/model-name" not in pods["iris"]


def test_service_is_a_load_balancer_on_port_80(build_model):
    service = by_kind(build_model(full_spec()))["Service"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_full_build_is_schema_valid_with_hpa_pdb_and_secret_refs(build_model):
    documents = build_model(full_spec())
    _validate_all(documents)
    objects = by_kind(documents)
    assert sorted(objects) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    assert {document["metadata"]["name"] for document in documents} == {"churn"}

    deployment = objects["Deployment"]
    # The HPA owns the replica count; a fixed one in git would fight it on every sync.
    assert "replicas" not in deployment["spec"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example.com:443/team/churn-model@{DIGEST_V2}"
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    assert container["resources"] == {
        "limits": {"cpu": "2", "memory": "3Gi"},
        "requests": {"cpu": "750m", "memory": "1536Mi"},
    }
    env = {item["name"]: item for item in container["env"]}
    assert env["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "churn-db", "key": "password"}},
    }
    assert env["GREETING"]["value"] == 'say "hi": #1 & {all} [of] *them*'
    assert env["MODEL_VERSION"]["value"] == "12"
    assert sorted(env) == ["BATCH_SIZE", "DB_PASSWORD", "GREETING", "LOG_LEVEL", "MODEL_NAME", "MODEL_VERSION"]

    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}

    pdb = objects["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert VERSION_LABEL not in pdb["spec"]["selector"]["matchLabels"]


def test_schema_validation_catches_a_broken_object():
    # Guards the validator itself: if this passed, the checks above would prove nothing.
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": "http"}]}]}},
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
