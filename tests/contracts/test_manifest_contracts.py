"""Every Argo CD object we render or ship matches the Argo CD CRDs; the control-service install
builds with kustomize into valid Kubernetes objects; the pieces agree with each other."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import crd_schema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from renderer import (
    ApplicationSpec,
    DeploymentSpec,
    application_manifest,
    application_name,
    model_dir,
    render_application,
    render_base,
    render_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGOCD_DIR = REPO_ROOT / "argocd"
CONTROL_SERVICE_DIR = ARGOCD_DIR / "control-service"
KUBERNETES_VERSION = "1.30"
PLACEHOLDER_REPO = "https://git.example.com/mlops/gitops.git"


def _load_all(path: Path) -> list[dict]:
    return [document for document in YAML(typ="safe", pure=True).load_all(path.read_text()) if document]


def _application(automated: bool) -> ApplicationSpec:
    return ApplicationSpec(
        name=application_name("mlops-models", "iris"),
        repo_url=PLACEHOLDER_REPO,
        path=model_dir("mlops-models", "iris"),
        destination_namespace="mlops-models",
        automated_sync=automated,
        prune=True,
        labels={"app.kubernetes.io/part-of": "mlops"},
    )


def _projects() -> dict[str, dict]:
    return {document["metadata"]["name"]: document for document in _load_all(ARGOCD_DIR / "project.yaml")}


@pytest.mark.parametrize("automated", [False, True], ids=["manual", "automated"])
def test_rendered_application_matches_the_crd(contracts_dir, automated):
    app = _application(automated)
    manifest = application_manifest(app)
    assert crd_schema.errors(contracts_dir, manifest) == []
    (content,) = render_application(app).values()
    (from_file,) = YAML(typ="safe", pure=True).load_all(content.decode())
    assert from_file == manifest
    assert ("automated" in manifest["spec"]["syncPolicy"]) is automated


def test_shipped_argocd_manifests_match_the_crds(contracts_dir):
    shipped = [*_load_all(ARGOCD_DIR / "project.yaml")]
    assert sorted(document["kind"] for document in shipped) == ["AppProject"]
    for document in shipped:
        assert crd_schema.errors(contracts_dir, document) == [], document["metadata"]["name"]


def test_crd_validation_catches_typos_and_wrong_types(contracts_dir):
    manifest = application_manifest(_application(False))
    typo = copy.deepcopy(manifest)
    typo["spec"]["destinaton"] = typo["spec"].pop("destination")
    assert any("destinaton" in error for error in crd_schema.errors(contracts_dir, typo))
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["source"]["repoURL"] = 42
    assert any("repoURL" in error for error in crd_schema.errors(contracts_dir, wrong_type))
    missing = copy.deepcopy(manifest)
    del missing["spec"]["destination"]
    assert crd_schema.errors(contracts_dir, missing)
    project = copy.deepcopy(_projects()["mlops-models"])
    project["spec"]["namespaceResourceWhitelist"][0]["kinds"] = "Deployment"
    assert crd_schema.errors(contracts_dir, project)


@pytest.mark.kustomize
def test_model_objects_are_allowed_by_the_models_project(tmp_path, kustomize_cmd):
    spec = DeploymentSpec(
        model_name="iris",
        namespace="mlops-models",
        model_version="1",
        image="127.0.0.1:5000/mlops/iris@sha256:" + "b" * 64,
        run_id="r1",
        model_uri="models:/iris/1",
        deployment_id="d1",
        replicas=2,
        autoscaling={"min_replicas": 2, "max_replicas": 3},
        disruption_budget={"min_available": 1},
    )
    for relative, content in {**render_base(), **render_model(spec)}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(content)
    result = subprocess.run(
        [*kustomize_cmd, str(tmp_path / model_dir(spec.namespace, spec.model_name))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    built = [document for document in YAML(typ="safe", pure=True).load_all(result.stdout) if document]
    project = _projects()["mlops-models"]["spec"]
    allowed = {(entry["group"], entry["kind"]) for entry in project["namespaceResourceWhitelist"]}
    rendered = {(document["apiVersion"].rpartition("/")[0], document["kind"]) for document in built}
    assert rendered == {
        ("apps", "Deployment"),
        ("", "Service"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
    }
    assert rendered <= allowed
    destinations = {(entry["server"], entry["namespace"]) for entry in project["destinations"]}
    app = application_manifest(_application(False))
    assert (app["spec"]["destination"]["server"], app["spec"]["destination"]["namespace"]) in destinations
    assert app["spec"]["project"] == "mlops-models"
    assert app["spec"]["source"]["repoURL"] in project["sourceRepos"]


def test_model_applications_have_one_writer_and_the_resources_finalizer():
    # No shipped Application (such as an app-of-apps) syncs argocd-apps/: the control service is the
    # one writer of model Applications (argocd/control-service/README.md).
    shipped_applications = [
        document
        for path in sorted(ARGOCD_DIR.rglob("*.yaml"))
        for document in _load_all(path)
        if isinstance(document, dict) and document.get("kind") == "Application"
    ]
    assert shipped_applications == []
    manifest = application_manifest(_application(False))
    assert manifest["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    (path,) = render_application(_application(False))
    assert path.startswith("argocd-apps/") and path.endswith(".yaml")


@pytest.mark.kustomize
def test_control_service_install_builds_into_valid_objects(kustomize_cmd):
    result = subprocess.run([*kustomize_cmd, str(CONTROL_SERVICE_DIR)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [document for document in YAML(typ="safe", pure=True).load_all(result.stdout) if document]
    kinds = sorted(document["kind"] for document in built)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "PersistentVolumeClaim",
            "Deployment",
            "Service",
        ]
    )
    for document in built:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    objects = {document["kind"]: document for document in built}

    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    secret_refs = {item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"] if "valueFrom" in item}
    assert secret_refs == {"mlops-control-git", "mlops-control-argocd", "mlops-control-registry"}
    assert (
        objects["Service"]["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == objects["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlops-control", "namespace": "mlops-system"}]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in objects["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for needed in [("", "services"), ("", "pods"), ("", "events"), ("apps", "deployments")]:
        assert granted[needed] >= {"get", "list", "watch"}
    assert all(verbs <= {"get", "list", "watch"} for verbs in granted.values()), (
        "the service must not write to the cluster"
    )


def test_secret_templates_are_valid_and_hold_no_values():
    secrets = _load_all(CONTROL_SERVICE_DIR / "secrets.example.yaml")
    assert {secret["metadata"]["name"] for secret in secrets} == {
        "mlops-control-git",
        "mlops-control-argocd",
        "mlops-control-registry",
    }
    for secret in secrets:
        kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
        assert "data" not in secret
        for value in secret["stringData"].values():
            assert value.startswith("<") and value.endswith(">"), "templates must only hold placeholders"
    kustomization = YAML(typ="safe", pure=True).load((CONTROL_SERVICE_DIR / "kustomization.yaml").read_text())
    assert "secrets.example.yaml" not in kustomization["resources"]


@pytest.mark.kustomize
def test_the_kubernetes_training_install_adds_its_namespace_role_and_settings(kustomize_cmd):
    install = ARGOCD_DIR / "control-service-kubernetes-training"
    result = subprocess.run([*kustomize_cmd, str(install)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [document for document in YAML(typ="safe", pure=True).load_all(result.stdout) if document]
    for document in built:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    [deployment] = [document for document in built if document["kind"] == "Deployment"]
    env = {item["name"]: item.get("value") for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLOPS_TRAINING__BACKEND"] == "kubernetes"
    assert env["MLOPS_BUILD__BACKEND"] == "buildah"  # the parent install's settings are kept
    training_namespace = env["MLOPS_TRAINING__KUBERNETES__NAMESPACE"]
    namespaces = {document["metadata"]["name"] for document in built if document["kind"] == "Namespace"}
    assert namespaces == {"mlops-system", training_namespace}
    [role] = [document for document in built if document["kind"] == "Role"]
    [binding] = [document for document in built if document["kind"] == "RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == training_namespace
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlops-control", "namespace": "mlops-system"}]
