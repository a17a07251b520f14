"""Fixtures: a file:// GitOps repo with one Kustomize app, and the simulator serving it."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from control_api.adapters.argocd.client import ArgoCDClient
from control_api.adapters.kubernetes.services import KubernetesReader
from control_api.settings import ArgoCDSettings, KubernetesSettings
from tests.simulator import ContractChecker, FakeKubelet, Simulator

APP_NAME = "iris"
NAMESPACE = "mlops-models"
APP_PATH = "apps/iris"


def _yaml(document: dict) -> str:
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, stream)
    return stream.getvalue()


def model_objects(name: str, image: str, service_type: str = "LoadBalancer") -> dict[str, dict]:
    labels = {"app.kubernetes.io/name": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "MODEL_NAME", "value": name}],
                            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": service_type, "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": ["deployment.yaml", "service.yaml"],
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "kustomization.yaml": kustomization}


class GitOpsRepo:
    """A bare repo (what Argo CD reads) and a working clone the test commits into."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "gitops.git"
        self.work = root / "gitops-work"
        self._git("init", "--bare", "--quiet", "--initial-branch=main", str(self.bare), cwd=root)
        self._git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit_files(self, folder: str, files: dict[str, dict], message: str) -> str:
        target = self.work / folder
        target.mkdir(parents=True, exist_ok=True)
        for existing in target.glob("*.yaml"):
            if existing.name not in files:
                existing.unlink()
        for filename, document in files.items():
            (target / filename).write_text(_yaml(document))
        self._git("add", "-A", folder)
        self._git(
            "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", message
        )
        self._git("push", "--quiet", "origin", "HEAD:main")
        return self._git("rev-parse", "HEAD").strip()

    def commit_model(self, image: str, **kwargs) -> str:
        return self.commit_files(APP_PATH, model_objects(APP_NAME, image, **kwargs), f"deploy {image}")

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.work, check=True, capture_output=True, text=True
        ).stdout


def application_manifest(repo_url: str, *, automated: bool = False) -> dict:
    spec = {
        "project": "mlops-models",
        "source": {"repoURL": repo_url, "path": APP_PATH, "targetRevision": "main"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE},
    }
    if automated:
        spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP_NAME, "namespace": "argocd", "labels": {"mlops/model": APP_NAME}},
        "spec": spec,
    }


@pytest.fixture
def gitops_repo(tmp_path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


@pytest.fixture
def simulator(gitops_repo, tmp_path, kustomize_cmd, contracts_dir):
    """Argo CD and the cluster it manages (FakeKubelet: no Docker), each behind its own HTTP server."""
    sim = Simulator(FakeKubelet(), work_dir=tmp_path / "simulator", kustomize_cmd=kustomize_cmd,
                    contracts_dir=contracts_dir, namespaces=[NAMESPACE], source_repos=[gitops_repo.url],
                    # 600 s of progressDeadlineSeconds pass in 6 s.
                    progress_deadline_scale=0.01)
    with sim:
        yield sim
    # Every test talks to the simulator within the published contracts unless it says otherwise.
    assert sim.checker.violations == []
    assert sim.cluster.errors == []


@pytest.fixture
def checker(simulator) -> ContractChecker:
    return simulator.checker


@pytest.fixture
def cluster(simulator):
    return simulator.cluster


@pytest.fixture
def sim_server(simulator):
    """The Argo CD API server (url, requests)."""
    return simulator.argo_server


@pytest.fixture
def argocd_settings(simulator) -> ArgoCDSettings:
    return ArgoCDSettings(server_url=simulator.argocd_url, token=simulator.argocd_token)


@pytest.fixture
def argocd(argocd_settings):
    with ArgoCDClient(argocd_settings, retry_backoff_seconds=0.01) as client:
        yield client


@pytest.fixture
def kubernetes(simulator):
    reader = KubernetesReader(
        KubernetesSettings(api_url=simulator.kubernetes_url, token=simulator.kubernetes_token),
        retry_backoff_seconds=0.01,
    )
    yield reader
    reader.close()
